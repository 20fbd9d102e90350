"""The demo world ``make run`` starts with: a creator, a roastery's Page and Instagram account, posts and reels."""

from __future__ import annotations

from datetime import timedelta

from replyflow.sandbox.models import ALL_TASKS, DemoWorld
from replyflow.sandbox.state import SandboxState

DEMO_USER_NAME = "Demo Creator"
DEMO_USERNAME = "demo.roastery"
# Everything replyflow asks for in the Facebook Login flow.
DEMO_SCOPES = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_metadata",
    "pages_messaging",
    "instagram_basic",
    "instagram_manage_comments",
    "instagram_manage_messages",
    "business_management",
]
INSTAGRAM_FIELDS = ["comments", "live_comments", "messages", "messaging_postbacks", "messaging_seen"]

_POSTS: list[tuple[str, str, str, str, timedelta]] = [
    (
        "REELS",
        "New harvest just landed 🇪🇹 Ethiopia Guji, washed. Blueberry, jasmine, a long sweet finish. "
        "Comment ROAST and we'll DM you the early-bird link ☕",
        "☕",
        "#6b3e26",
        timedelta(hours=20),
    ),
    (
        "FEED",
        "Saturday cupping at the roastery, 10am. Five coffees, zero snobbery. Comment LINK for free tickets 🎟️",
        "🫘",
        "#a0522d",
        timedelta(days=2, hours=3),
    ),
    (
        "REELS",
        "How we dial in a V60 in under a minute ⏱️ Want the recipe card? Comment RECIPE.",
        "🫖",
        "#3e6b5a",
        timedelta(days=4, hours=6),
    ),
    (
        "FEED",
        "Meet Rosa, our head roaster 👋 Ten years, four countries, one very loud roaster named Bertha.",
        "🔥",
        "#b5651d",
        timedelta(days=9),
    ),
    (
        "FEED",
        "Giveaway closed — thank you all! Winners get a DM from us today 🎉",
        "🎁",
        "#7b4b94",
        timedelta(days=16),
    ),
]

_COMMENTS: list[tuple[int, str, str, timedelta]] = [
    (0, "coffee.lena", "ROAST please!! 😍", timedelta(hours=3)),
    (0, "marco_brews", "Is this one good as espresso?", timedelta(hours=2)),
    (1, "jules.pours", "LINK 🙋‍♀️", timedelta(days=1, hours=5)),
    (2, "aeropress.andy", "recipe pls", timedelta(days=3)),
    (3, "coffee.lena", "Bertha 😂❤️", timedelta(days=8)),
]


def seed_demo_world(state: SandboxState) -> DemoWorld:
    """Build the demo world once; called again it returns the same ids (with a fresh token if the old one died)."""
    with state.transaction():
        demo = state.demo
        if demo is not None and demo.user_id in state.world.users:
            token = state.token_info(demo.user_token)
            if token is None or state.token_error(token) is not None:
                demo = demo.model_copy(
                    update={"user_token": state.issue_user_token(demo.user_id, scopes=DEMO_SCOPES, long_lived=True)}
                )
                state.remember_demo(demo)
            if (
                demo.instagram_login_account_id is None
                or demo.instagram_login_account_id not in state.world.ig_accounts
            ):
                demo = _seed_instagram_login_account(state, demo)
                state.remember_demo(demo)
            return demo.model_copy()

        user = state.add_user(DEMO_USER_NAME, scopes=DEMO_SCOPES)
        roastery = state.add_page("Demo Roastery", owner_user_id=user.id, tasks=list(ALL_TASKS), category="Coffee Shop")
        bakery = state.add_page("Sunday Bakes Club", owner_user_id=user.id, tasks=list(ALL_TASKS), category="Community")
        account = state.add_instagram_account(
            roastery.id,
            username=DEMO_USERNAME,
            name="Demo Roastery ☕",
            biography="Small-batch specialty coffee. Roasted on Thursdays, gone by Sunday.",
            website="https://roastery.example",
            followers_count=12840,
            follows_count=312,
            color="#6b3e26",
        )
        now = state.now()
        media_ids: list[str] = []
        for product_type, caption, emoji, color, age in _POSTS:
            media = state.add_media(
                account.id,
                caption=caption,
                media_product_type="REELS" if product_type == "REELS" else "FEED",
                timestamp=now - age,
                like_count=120 + 37 * len(media_ids),
                emoji=emoji,
                color=color,
            )
            media_ids.append(media.id)
        for index, username, text, age in _COMMENTS:
            state.add_comment(media_ids[index], text=text, username=username, at=now - age)
        # Set in the App Dashboard for a real app; the Page subscription is left to our product's connect flow.
        state.set_app_subscription(object="instagram", fields=INSTAGRAM_FIELDS)
        state.set_app_subscription(object="page", fields=["feed", "messages", "messaging_postbacks"])
        user_token = state.issue_user_token(user.id, scopes=DEMO_SCOPES, long_lived=True)
        demo = DemoWorld(
            user_id=user.id,
            user_token=user_token,
            page_id=roastery.id,
            page_without_instagram_id=bakery.id,
            ig_account_id=account.id,
            username=account.username,
            media_ids=media_ids,
        )
        demo = _seed_instagram_login_account(state, demo)
        state.remember_demo(demo)
        return demo


INSTAGRAM_LOGIN_USERNAME = "lina.ceramics"
_INSTAGRAM_LOGIN_POSTS: list[tuple[str, str, str, str, timedelta]] = [
    (
        "REELS",
        "Glazing day 🏺 Speckled oat on every mug. Comment MUG and I'll DM you the pre-order link.",
        "🏺",
        "#8c6a4f",
        timedelta(hours=6),
    ),
    (
        "FEED",
        "Studio open house on Sunday, 2pm. Comment VISIT for the address.",
        "🪴",
        "#5f7a61",
        timedelta(days=1, hours=2),
    ),
]


def _seed_instagram_login_account(state: SandboxState, demo: DemoWorld) -> DemoWorld:
    """A creator with no Facebook Page: reachable only through Instagram Login (graph.instagram.com)."""
    existing = state.find_ig_account(INSTAGRAM_LOGIN_USERNAME)
    account = existing or state.add_instagram_account(
        None,
        username=INSTAGRAM_LOGIN_USERNAME,
        name="Lina's Ceramics",
        biography="Handmade stoneware, one kiln at a time.",
        followers_count=3120,
        follows_count=188,
        color="#8c6a4f",
    )
    media_ids = [m.id for m in state.media_of(account.id)]
    if not media_ids:
        now = state.now()
        for product_type, caption, emoji, color, age in _INSTAGRAM_LOGIN_POSTS:
            media = state.add_media(
                account.id,
                caption=caption,
                media_product_type="REELS" if product_type == "REELS" else "FEED",
                timestamp=now - age,
                like_count=64 + 21 * len(media_ids),
                emoji=emoji,
                color=color,
            )
            media_ids.append(media.id)
    return demo.model_copy(
        update={
            "instagram_login_account_id": account.id,
            "instagram_login_username": account.username,
            "instagram_login_media_ids": media_ids,
        }
    )
