"""The catch-up reconciler: comments whose webhook never came are found by polling and handled exactly once."""

from __future__ import annotations

import datetime as dt

from replyflow.automation.models import Rule
from replyflow.automation.reconcile import Reconciler, due_accounts
from replyflow.webhooks.models import EventSource, WebhookEvent

from .world import World


def _reconciler(world: World, **kwargs: int) -> Reconciler:
    return Reconciler(runtime=world.runtime, graph=world.engine.graph, **kwargs)


def _missed_comment(world: World, text: str, *, media: int | str = 0, username: str = "missed.person") -> str:
    """Someone comments, and Meta never delivers the webhook."""
    media_id = world.media_ids[media] if isinstance(media, int) else media
    comment = world.state.add_comment(media_id, text=text, username=username)
    world.state.take_pending_webhooks()
    return comment.id


def test_a_missed_comment_is_found_and_handled_once(world: World) -> None:
    world.add_rule()
    comment = world.state.add_comment(world.media_ids[0], text="link please", username="missed.person")
    late_webhook = world.state.take_pending_webhooks()

    report = _reconciler(world).reconcile_account(world.account_id)
    world.drive()

    assert report.comments_fed == 1 and report.complete
    world.assert_reply_then_dm_once(comment.id)
    run = world.run_for(comment.id)
    assert run.source == "reconciler"
    assert run.comment_created_at == comment.timestamp
    with world.runtime.session() as session:
        event = session.query(WebhookEvent).filter(WebhookEvent.natural_key == f"comment:{comment.id}").one()
        assert event.source == EventSource.RECONCILER.value

    # The webhook turns up after all, and the reconciler runs again: nothing is sent twice.
    world.state._volatile.pending.extend(late_webhook)
    world.deliver()
    world.advance(minutes=10)
    assert _reconciler(world).reconcile_account(world.account_id).comments_fed == 0
    world.drive()
    world.assert_reply_then_dm_once(comment.id)


def test_only_targeted_posts_and_only_comments_inside_the_window(world: World) -> None:
    world.add_rule(posts={"mode": "specific", "media_ids": [world.media_ids[0]]})
    old = world.state.add_comment(
        world.media_ids[0], text="link", username="old.person", at=world.now() - dt.timedelta(days=8)
    )
    world.state.take_pending_webhooks()
    recent = _missed_comment(world, "link", username="recent.person")
    untargeted = _missed_comment(world, "link", media=1, username="other.post")
    own = world.state.add_comment(world.media_ids[0], text="thanks all!", username=world.sandbox.username)
    world.state.take_pending_webhooks()

    report = _reconciler(world).reconcile_account(world.account_id)
    world.drive()

    assert report.media_checked == [world.media_ids[0]]
    assert report.comments_fed == 1
    world.assert_reply_then_dm_once(recent)
    seen = {r.comment_id for r in world.runs()}
    assert old.id not in seen and untargeted not in seen and own.id not in seen


def test_any_rules_poll_the_newest_posts(world: World) -> None:
    world.add_rule(posts={"mode": "any"})
    missed = [_missed_comment(world, "link", media=i, username=f"p{i}") for i in range(3)]
    report = _reconciler(world).reconcile_account(world.account_id)
    world.drive()
    assert set(report.media_checked) == set(world.media_ids)
    for comment_id in missed:
        world.assert_reply_then_dm_once(comment_id)


def test_next_rules_are_bound_by_the_reconciler(world: World) -> None:
    rule_id = world.add_rule(posts={"mode": "next"})
    world.advance(minutes=3)
    first = world.state.add_media(world.sandbox.ig_id, caption="first new").id
    world.advance(minutes=3)
    world.state.add_media(world.sandbox.ig_id, caption="second new")
    missed = _missed_comment(world, "link", media=first)

    report = _reconciler(world).reconcile_account(world.account_id)
    world.drive()

    assert report.rules_bound == [rule_id]
    with world.runtime.session() as session:
        rule = session.get(Rule, rule_id)
        assert rule is not None and rule.bound_media_id == first
    world.assert_reply_then_dm_once(missed)


def test_the_call_budget_is_respected_and_the_watermark_waits(world: World) -> None:
    world.add_rule(posts={"mode": "specific", "media_ids": list(world.media_ids)}, once_per_user=False)
    for i in range(70):  # two pages of comments on the first post
        world.state.add_comment(world.media_ids[0], text=f"link {i}", username=f"fan{i}")
    world.state.take_pending_webhooks()

    report = _reconciler(world, call_budget=1).reconcile_account(world.account_id)

    assert report.calls == 1 and not report.complete
    assert report.comments_fed == 50
    full = _reconciler(world).reconcile_account(world.account_id)
    assert full.complete and full.comments_fed == 20


def test_a_later_check_reads_only_what_is_new(world: World) -> None:
    world.add_rule(once_per_user=False)
    for i in range(60):
        world.state.add_comment(world.media_ids[0], text=f"hi {i}", username=f"fan{i}")
    world.state.take_pending_webhooks()
    world.advance(minutes=10)  # older than one interval before the check: not read again next time
    first = _reconciler(world).reconcile_account(world.account_id)
    assert first.calls == 2 and first.complete

    world.advance(minutes=30)
    _missed_comment(world, "link", username="new.person")
    second = _reconciler(world).reconcile_account(world.account_id)
    assert (second.calls, second.comments_fed) == (1, 1)


def test_due_accounts_are_claimed_once_per_interval(world: World) -> None:
    world.add_rule()
    interval = dt.timedelta(seconds=300)
    with world.runtime.session() as session:
        assert due_accounts(session=session, now=world.now(), interval=interval) == [world.account_id]
    with world.runtime.session() as session:
        assert due_accounts(session=session, now=world.now() + dt.timedelta(seconds=10), interval=interval) == []
    with world.runtime.session() as session:
        later = world.now() + dt.timedelta(seconds=301)
        assert due_accounts(session=session, now=later, interval=interval) == [world.account_id]


def test_accounts_needing_reauthorisation_are_not_polled(world: World) -> None:
    from replyflow.accounts.models import Account

    world.add_rule()
    _missed_comment(world, "link")
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        account.reauthorization_required = True
    report = _reconciler(world).reconcile_account(world.account_id)
    assert report.calls == 0 and world.runs() == []
