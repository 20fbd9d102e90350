"""A newcomer's first hour in a real browser, on the demo ``replyflow demo`` seeds (issue 17's rough edges).

One ``replyflow serve`` (sandbox mode, its worker in-process) on a free port, seeded by ``replyflow demo --json``
run from the same folder, serves the module. Each test follows one journey and saves its screenshot under
docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.test_browser import (
    CHROMIUM,
    Server,
    _check_page,
    _cli,
    _create_schema,
    _free_port,
    _wait_until_up,
    browser,
    page,
)

__all__ = ["browser", "page"]  # fixtures shared with test_browser, bound to this module's server

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

EMAIL = "newcomer@example.com"
PASSWORD = "a calm and long password"
PHONE = {"width": 390, "height": 844}


class Demo:
    def __init__(self, server: Server, seed: dict[str, Any], env: dict[str, str], root: Path) -> None:
        self.server, self.seed, self.env, self.root = server, seed, env, root

    @property
    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {self.seed['api_key']}"}, timeout=10
        )


def _start(env: dict[str, str], root: Path, port: int) -> subprocess.Popen[bytes]:
    log = root / "server.log"
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "replyflow", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env.update(
        REPLYFLOW_DATABASE_URL=f"sqlite:///{root / 'replyflow.db'}",
        REPLYFLOW_DATA_DIR=str(root / "data"),
        REPLYFLOW_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def _seed(env: dict[str, str], root: Path) -> dict[str, Any]:
    seed: dict[str, Any] = json.loads(_cli(env, root, "demo", "--json").splitlines()[-1])
    _cli(
        env,
        root,
        "user",
        "create",
        "--workspace",
        seed["workspace_id"],
        "--email",
        EMAIL,
        "--role",
        "owner",  # the demo's own user is the workspace's first; later users are members unless told
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    return seed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("journeys")
    port = _free_port()
    env = _env(root, REPLYFLOW_PUBLIC_URL=f"http://127.0.0.1:{port}")
    _create_schema(env["REPLYFLOW_DATABASE_URL"])
    proc = _start(env, root, port)
    server = Server(url=f"http://127.0.0.1:{port}", log=root / "server.log")
    try:
        _wait_until_up(server.url, proc, server.log)
        yield Demo(server, _seed(env, root), env, root)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def server(demo: Demo) -> Server:
    return demo.server


def _sign_in(page: Any) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/app")


def _post_comment(page: Any, post: str, text: str, username: str) -> None:
    """Comment, in the Sandbox page, on the demo post whose caption contains ``post``."""
    page.goto("/app/sandbox")
    page.locator(".post-tile", has_text=post).click()
    page.get_by_label("Commenter").fill(username)
    page.get_by_label("Comment", exact=True).fill(text)
    page.get_by_role("button", name="Post this comment").click()
    page.locator("#sim-result", has_text="webhook reached replyflow").wait_for()


def _comment(page: Any, post: str, text: str, username: str) -> None:
    """Comment on the demo post whose caption contains ``post`` and wait until replyflow has finished with it."""
    _post_comment(page, post, text, username)
    page.locator("#sandbox-watch .feed-item", has_text=text).locator(".badge", has_text="Done").wait_for(timeout=30_000)


def _run_of(demo: Demo, text: str) -> dict[str, Any]:
    with demo.api as api:
        for run in api.get("/api/runs", params={"limit": 100}).json()["items"]:
            if run["text"] == text:
                found: dict[str, Any] = run
                return found
    raise AssertionError(f"no run for {text!r}")


def _wait_for_status(demo: Demo, text: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            run = _run_of(demo, text)
        except AssertionError:
            run = {}
        if run.get("status") in statuses:
            return run
        time.sleep(0.25)
    raise AssertionError(f"{text!r} is {run.get('status')}, not {statuses}")


def _choose_post(page: Any, caption: str) -> None:
    """Pick the post whose caption starts with ``caption`` in Activity's post filter."""
    select = page.get_by_label("Post", exact=True)
    value = select.locator("option", has_text=caption).first.get_attribute("value")
    select.select_option(value)


def _wait_idle(demo: Demo, timeout: float = 30) -> None:
    """Until no comment is being worked on, so an injected failure meets the next comment's DM, not another's."""
    final = {"done", "skipped", "failed", "paused"}
    deadline = time.monotonic() + timeout
    with demo.api as api:
        while time.monotonic() < deadline:
            runs = api.get("/api/runs", params={"limit": 100}).json()["items"]
            if all(run["status"] in final for run in runs):
                return
            time.sleep(0.25)
    raise AssertionError("comments are still being worked on")


def _inject(demo: Demo, **failure: Any) -> None:
    _wait_idle(demo)
    resp = httpx.post(f"{demo.server.url}/sandbox/control/failures", json=failure, timeout=10)
    assert resp.status_code == 201, resp.text


# -- 1. the demo answers what its posts ask for --------------------------------------------------------------


def test_the_demo_answers_each_post_with_the_word_its_caption_asks_for(page: Any, demo: Demo) -> None:
    _sign_in(page)
    page.goto("/app/rules")
    rules = page.locator("table").inner_text()
    assert "ROAST" in rules and "LINK" in rules and "RECIPE" in rules
    for post, text, dm in (
        ("Comment ROAST", "ROAST please! ☕", "early-bird link"),
        ("Comment LINK", "LINK for me 🙋", "free tickets"),
        ("Comment RECIPE", "recipe please", "V60 recipe card"),
    ):
        _comment(page, post, text, "coffee.newbie")
        # .first: the demo's own seeded comments (fed by the reconciler) may have had the same DM already.
        page.locator("#sandbox-watch .outbox-item", has_text=dm).first.wait_for(timeout=10_000)
    # Meta gives no name with a comment: the demo's "{first_name|there}" says "Hi there!", not the username.
    assert "Hi there!" in page.locator("#sandbox-watch").inner_text()
    _check_page(page, "sandbox-demo")


# -- 2. `replyflow demo` finds the server on another port ----------------------------------------------------


def test_demo_seeds_the_server_running_from_the_same_folder_on_any_port(
    browser: Any, tmp_path: Path, demo: Demo
) -> None:
    port = _free_port()
    env = _env(tmp_path)  # REPLYFLOW_PUBLIC_URL left at its default (port 8000): the server is elsewhere
    _create_schema(env["REPLYFLOW_DATABASE_URL"])
    proc = _start(env, tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, tmp_path / "server.log")
        deadline = time.monotonic() + 30
        while not (tmp_path / "data" / "server.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        seed = _seed(env, tmp_path)
        headers = {"Authorization": f"Bearer {seed['api_key']}"}
        media = httpx.get(f"{url}/api/accounts/{seed['account_id']}/media", headers=headers, timeout=10).json()
        assert [m["id"] for m in media["items"]] == seed["media_ids"]
        # The running server's emulator knows the account: a simulated comment is delivered and answered.
        posted = httpx.post(
            f"{url}/api/sandbox/comments",
            headers=headers,
            json={
                "account_id": seed["account_id"],
                "media_id": seed["media_ids"][0],
                "text": "ROAST!",
                "username": "port.hopper",
            },
            timeout=10,
        )
        assert posted.status_code == 202 and all(d["ok"] for d in posted.json()["webhook_deliveries"])
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        try:
            tab = context.new_page()
            _sign_in(tab)
            tab.goto("/app/sandbox")
            assert tab.locator(".post-tile", has_text="Comment ROAST").count() == 1
            tab.locator("#sandbox-watch .feed-item", has_text="ROAST!").locator(".badge", has_text="Done").wait_for(
                timeout=30_000
            )
        finally:
            context.close()
    finally:
        _stop(proc)
    assert not (tmp_path / "data" / "server.json").exists(), "the stopped server left its address behind"
    # With no server running, the command says plainly where the demo went and what to do.
    done = subprocess.run(
        [sys.executable, "-m", "replyflow", "demo", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Start 'replyflow serve' from this folder" in done.stderr


# -- 3 and the Activity filters: own replies hidden; search, dates and posts ---------------------------------


def test_activity_hides_own_replies_and_finds_comments_by_words_username_date_and_post(page: Any, demo: Demo) -> None:
    _sign_in(page)
    _comment(page, "Comment ROAST", "ROAST for maria", "maria.k")
    page.goto("/app/activity")
    feed = page.locator("#feed")
    assert "written by the account itself" not in feed.inner_text()
    page.get_by_label("Show the account’s own replies").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**own=show*")
    assert "written by the account itself" in page.locator("#feed").inner_text()

    page.goto("/app/activity")
    page.get_by_label("Search").fill("@maria")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**q=*")
    items = page.locator(".feed-item")
    assert items.count() >= 1 and all("@maria.k" in t for t in items.all_inner_texts())
    today = time.strftime("%Y-%m-%d", time.gmtime())
    page.get_by_label("From", exact=True).fill(today)
    page.get_by_label("To", exact=True).fill(today)
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**since=*")
    assert "ROAST for maria" in page.locator("#feed").inner_text()
    page.get_by_label("From", exact=True).fill("2020-01-01")
    page.get_by_label("To", exact=True).fill("2020-01-02")
    page.get_by_role("button", name="Apply filters").click()
    page.locator("#feed", has_text="Nothing matches these filters").wait_for()

    page.goto("/app/activity")
    _choose_post(page, "Saturday cupping")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**media_id=*")
    assert "ROAST for maria" not in page.locator("#feed").inner_text()
    _choose_post(page, "New harvest")
    page.get_by_label("Search").fill("roast")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**q=roast*")
    item = page.locator(".feed-item", has_text="ROAST for maria")
    # 4. the post is its thumbnail and caption, not an id
    assert "New harvest just landed" in item.inner_text() and item.locator(".post-chip img").count() == 1
    assert not re.search(r"post \d{10,}", page.locator("#feed").inner_text())
    _check_page(page, "activity-filters")


# -- 4 and 7. posts by caption, deleted rules marked, the app's own 404 --------------------------------------


def test_posts_show_their_caption_and_deleted_rules_are_marked_everywhere(page: Any, demo: Demo) -> None:
    _sign_in(page)
    page.goto("/app/rules/new")
    page.get_by_label("Rule name").fill("Short-lived giveaway")
    page.locator(".post-tile", has_text="Comment RECIPE").click()
    page.get_by_label("Keywords").fill("giveaway")
    page.get_by_label("Message", exact=True).fill("You are in the giveaway, {first_name|friend}!")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url("**/app/rules")
    _comment(page, "Comment RECIPE", "giveaway please", "lena.giveaway")
    rule_id = _run_of(demo, "giveaway please")["rule_id"]

    page.goto(f"/app/rules/{rule_id}/delete")
    page.get_by_role("button", name=re.compile("Delete")).click()
    page.wait_for_url("**/app/rules")

    page.goto("/app/conversations")
    thread = page.locator(".thread", has_text="lena.giveaway")
    text = thread.inner_text()
    assert "Short-lived giveaway (deleted)" in text and "How we dial in a V60" in text
    assert thread.get_by_role("link", name="Short-lived giveaway").count() == 0
    assert not re.search(r"post \d{10,}", page.locator("main").inner_text())
    _check_page(page, "conversations-deleted-rule")

    page.goto("/app/analytics")
    main = page.locator("main").inner_text()
    assert "Short-lived giveaway (deleted)" in main
    assert page.get_by_role("link", name="Short-lived giveaway").count() == 0
    per_post = page.locator(".post-table").inner_text()
    assert "New harvest just landed" in per_post and "How we dial in a V60" in per_post
    _check_page(page, "analytics-posts")

    page.goto(f"/app/rules/{rule_id}")
    assert page.get_by_role("heading", name="Not found").is_visible()
    body = page.locator("main").inner_text()
    assert "“Short-lived giveaway” was deleted" in body and "GET /api" not in body
    assert page.get_by_role("link", name="Back to the overview").is_visible()
    assert page.get_by_role("navigation", name="Main").count() == 1
    page.goto("/app/accounts/acc_does_not_exist/disconnect")
    assert "GET /api" not in page.locator("main").inner_text()
    assert page.get_by_role("link", name="Back to the overview").is_visible()
    _check_page(page, "not-found")


# -- 5. paused and failed DMs are visible, with Retry now; re-connecting resumes at once ---------------------


def test_stuck_dms_show_on_accounts_and_overview_and_go_out_with_retry_now(page: Any, demo: Demo) -> None:
    _sign_in(page)
    # Meta refuses the DM for a missing permission (code 10): the run fails.
    _inject(demo, pattern="POST /*/messages", kind="error", code=10, times=1)
    _post_comment(page, "Comment LINK", "LINK please, permission test", "perm.denied")
    _wait_for_status(demo, "LINK please, permission test", {"failed"})

    page.goto("/app")
    stuck = page.locator(".stuck-dms")
    assert "did not go out" in stuck.inner_text()
    assert "You are all set" not in page.locator("main").inner_text()
    _check_page(page, "overview-stuck")
    page.goto("/app/accounts")
    card = page.locator(".card", has_text="@demo.roastery")
    assert "1 DM for @demo.roastery did not go out" in card.inner_text()
    page.get_by_role("button", name="Check now").click()
    page.wait_for_url("**/app/accounts")
    assert "everything is in order" not in page.locator("main").inner_text()
    _check_page(page, "accounts-stuck")
    page.get_by_role("button", name="Retry now").click()
    page.wait_for_url("**/app/accounts")
    assert "Retrying 1 DM" in page.locator(".flash").inner_text()
    _wait_for_status(demo, "LINK please, permission test", {"done"}, timeout=20)
    page.goto("/app/accounts")
    assert page.locator(".stuck-dms").count() == 0

    # The token stops working (code 190): the DM pauses; connecting the Page again sends it at once.
    _inject(demo, pattern="POST /*/messages", kind="error", code=190, times=1)
    _post_comment(page, "Comment LINK", "LINK please, token test", "token.broke")
    _wait_for_status(demo, "LINK please, token test", {"paused"})
    page.goto("/app/integrations")
    page.get_by_role("button", name="Use a sandbox User token").click()
    page.wait_for_url("**conversion_id=*")
    page.get_by_role("button", name="Connect this Page").click()
    page.wait_for_url("**account_id=*")
    started = time.monotonic()
    _wait_for_status(demo, "LINK please, token test", {"done"}, timeout=20)
    assert time.monotonic() - started < 20


# -- 6. the preview tells the truth about {first_name} -------------------------------------------------------


def test_the_dm_preview_fills_first_name_as_a_real_comment_would(page: Any, demo: Demo) -> None:
    _sign_in(page)
    page.goto("/app/rules/new")
    message = page.get_by_label("Message", exact=True)
    preview = page.locator("#dm-preview-messages")
    message.fill("Hi {first_name}! Here is your link")
    assert "Hi alex.rivera! Here is your link" in preview.inner_text()
    message.fill("Hi {first_name|there}! Here is your link")
    assert "Hi there! Here is your link" in preview.inner_text()
    assert "{first_name|there}" in page.locator("#dm-help").inner_text()
    page.get_by_label("Rule name").fill("Preview check")
    page.locator(".post-tile", has_text="Comment ROAST").click()
    page.get_by_label("Keywords").fill("preview")
    page.get_by_label("Sample comment").fill("preview please")
    page.get_by_role("button", name="Test", exact=True).click()
    page.locator("#test-result", has_text="Hi there! Here is your link").wait_for()
    page.locator("#dm-preview-messages").scroll_into_view_if_needed()
    _check_page(page, "rule-builder-first-name")


# -- 8. phones: a menu button and cards ----------------------------------------------------------------------


def test_on_a_phone_the_menu_is_a_button_and_rules_are_cards(page: Any, demo: Demo) -> None:
    _sign_in(page)
    page.set_viewport_size(PHONE)
    page.goto("/app/rules")
    nav = page.get_by_role("navigation", name="Main")
    assert not nav.is_visible()
    toggle = page.get_by_role("button", name=re.compile("^Menu"))
    assert "Rules" in toggle.inner_text() and toggle.get_attribute("aria-expanded") == "false"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the Rules page scrolls sideways on a phone ({width}px)"
    row = page.locator("table.table-cards tbody tr").first
    assert row.evaluate("el => getComputedStyle(el).display") == "block"
    _check_page(page, "rules-mobile")
    toggle.click()
    assert nav.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    assert nav.get_by_role("link", name="Rules").get_attribute("aria-current") == "page"
    _check_page(page, "menu-mobile")
    page.keyboard.press("Escape")
    assert not nav.is_visible()
    for path in ("/app", "/app/activity", "/app/accounts", "/app/analytics", "/app/conversations"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path


# -- 9. plain messages and visible limits --------------------------------------------------------------------


def test_the_rule_builder_says_plainly_what_is_too_long_and_warns_about_a_rule_without_dm(
    page: Any, demo: Demo
) -> None:
    _sign_in(page)
    page.goto("/app/rules/new")
    name = page.get_by_label("Rule name")
    long_name = " - ".join(["A very long rule name"] * 6)  # 141 characters, pasted at once
    name.fill(long_name)
    assert name.input_value() == long_name, "the pasted name was cut off silently"
    assert "141 / 120 characters: 21 too many" in page.locator("#name ~ p").first.inner_text()
    page.get_by_label("Keywords").fill(", ".join(f"word{i}" for i in range(600)))
    page.get_by_label("Message", exact=True).fill("Here you go")
    counter = page.locator("#dm-text-count")
    assert "/ 1000" in counter.inner_text()
    page.get_by_role("button", name="Add a button").click()
    page.get_by_label("Button title 1").fill("Open")
    assert "/ 640" in counter.inner_text() and "a message with buttons may have 640" in counter.inner_text()
    page.get_by_label("Button link 1").fill("https://example.com")
    page.get_by_role("button", name="Save rule").click()
    page.locator("#form-errors").wait_for()
    errors = page.locator("main").inner_text()
    assert "The rule name may have at most 120 characters: 21 too many" in errors
    assert "Use at most 100 keywords (there are 600)" in errors
    assert "should have" not in errors and "after validation" not in errors
    assert errors.count("at most 120 characters") == 1
    _check_page(page, "rule-builder-limits")

    # A rule that only replies in public is saved, with a word about it.
    page.goto("/app/rules/new")
    page.get_by_label("Rule name").fill("Public thanks only")
    page.locator(".post-tile", has_text="Meet Rosa").click()
    page.get_by_label("Keywords").fill("thanks")
    assert page.locator("#dm-none").is_visible()
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url("**/app/rules")
    assert "It sends no DM" in page.locator(".flash").inner_text()


# -- 10. a sandbox User token; the missing-permission screen ---------------------------------------------------


def test_the_sandbox_gives_a_user_token_and_a_missing_permission_is_explained_once(page: Any, demo: Demo) -> None:
    _sign_in(page)
    page.goto("/app/integrations")
    assert "cannot make a token for the demo" in page.locator("#token-help").inner_text()
    page.get_by_label("Permissions", exact=True).select_option("instagram_manage_messages")
    page.get_by_role("button", name="Use a sandbox User token").click()
    page.wait_for_url("**conversion_id=*")
    step = page.locator("#step-connect")
    assert "is-done" not in (step.get_attribute("class") or "")
    assert "Done." not in step.inner_text()
    assert page.get_by_role("button", name="Connect again").is_visible()
    pages = page.locator("#step-pages").inner_text()
    assert pages.count("instagram_manage_messages") == 1, "the missing permission is repeated under every Page"
    help_link = page.locator("#step-pages .problems a[href^='https://']")
    assert help_link.count() >= 1, "help addresses are printed as text instead of links"
    page.locator("#connect-again").scroll_into_view_if_needed()
    _check_page(page, "integrations-missing-permission")
