"""When Meta fails: transient errors back off, unknown outcomes are reconciled (never repeated), throttling slows
the account down, final errors end the run with a reason, and an invalid token pauses the account's runs."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from replyflow.accounts.models import Account, TokenStatus
from replyflow.automation.engine import EngineOptions, Outcome
from replyflow.automation.intake import resume_paused_runs
from replyflow.automation.models import AccountAutomationState, RunStatus, SendState
from replyflow.graph.usage import PlatformUsage, Usage

from .world import World

MESSAGES = "POST /{page-id}/messages"
REPLIES = "POST /{comment-id}/replies"


def _steps(world: World, comment_id: str) -> list[str]:
    return [s.step for s in world.steps(world.run_for(comment_id).id)]


def test_unknown_outcome_private_reply_is_sent_exactly_once(world: World) -> None:
    """The DM reaches Meta but the answer is lost: the re-attempt reads 2534025 as "already sent"."""
    world.add_rule()
    world.state.inject_failure(MESSAGES, kind="timeout_after_send")
    comment_id = world.comment("link")

    world.drive()

    world.assert_reply_then_dm_once(comment_id)
    run = world.run_for(comment_id)
    assert run.status == RunStatus.DONE.value
    assert run.dm_state == SendState.SENT.value
    assert run.dm_reconciled is True
    assert run.dm_attempts == 2
    assert _steps(world, comment_id)[-5:] == ["dm_attempt", "retry_scheduled", "dm_attempt", "dm_sent", "done"]


def test_unknown_outcome_public_reply_is_found_not_reposted(world: World) -> None:
    world.add_rule()
    world.state.inject_failure(REPLIES, kind="timeout_after_send")
    comment_id = world.comment("link")

    world.drive()

    world.assert_reply_then_dm_once(comment_id)
    run = world.run_for(comment_id)
    assert run.public_reply_attempts == 1
    assert "public_reply_reconciled" in _steps(world, comment_id)
    assert run.public_reply_id == world.outbox("public_reply", comment_id=comment_id)[0].result_id


def test_an_unknown_reply_to_a_reply_is_looked_for_in_the_thread(world: World) -> None:
    world.add_rule(include_replies=True)
    parent = world.comment("nice", username="first.person")
    world.state.inject_failure(REPLIES, kind="timeout_after_send")
    reply = world.comment("link?", username="second.person", parent_id=parent)
    world.drive()
    world.assert_reply_then_dm_once(reply)
    assert "public_reply_reconciled" in _steps(world, reply)


def test_a_public_reply_that_never_landed_is_posted_after_checking(world: World) -> None:
    """A timeout before Meta did anything: the check finds no reply of ours, so it is posted once."""
    world.add_rule()
    world.state.inject_failure(REPLIES, kind="timeout")
    comment_id = world.comment("link")
    world.drive()
    world.assert_reply_then_dm_once(comment_id)
    assert world.run_for(comment_id).public_reply_attempts == 2


@pytest.mark.parametrize("endpoint", [REPLIES, MESSAGES])
def test_transient_server_errors_are_retried_with_backoff(world: World, endpoint: str) -> None:
    world.add_rule()
    world.state.inject_failure(endpoint, kind="transient", times=3)
    comment_id = world.comment("link")

    world.drive()

    world.assert_reply_then_dm_once(comment_id)
    retries = [s for s in world.steps(world.run_for(comment_id).id) if s.step == "retry_scheduled"]
    assert len(retries) == 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(retries)]
    assert gaps == sorted(gaps), "back-off grows"


def test_transient_errors_on_reads_back_off_too(world: World) -> None:
    world.add_rule(posts={"mode": "next"})
    world.advance(minutes=1)
    post = world.state.add_media(world.sandbox.ig_id, caption="new").id
    world.state.inject_failure("GET /{ig-id}/media", kind="transient", times=2)
    comment_id = world.comment("link", media=post)
    world.drive()
    world.assert_reply_then_dm_once(comment_id)


def test_attempts_are_bounded(world: World) -> None:
    world.engine.options = EngineOptions(lease_seconds=30, max_attempts=4, backoff_base_seconds=1.0)
    world.add_rule()
    world.state.inject_failure(MESSAGES, kind="error", code=1, times=None)
    comment_id = world.comment("link")

    world.drive()

    run = world.run_for(comment_id)
    assert (run.status, run.reason) == ("failed", "too_many_attempts")
    assert run.attempts == 4
    # Code 1 on a send is an unknown outcome, but the sandbox refused every one: nothing reached the person.
    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["public_reply"]


def test_meta_rate_limits_slow_the_account_down_and_nothing_is_lost(world: World) -> None:
    world.add_rule()
    world.state.inject_failure(MESSAGES, kind="rate_limit", code=613, regain_minutes=2)
    comment_id = world.comment("link")

    world.drive(advance=False)
    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["public_reply"]
    with world.runtime.session() as session:
        state = session.get(AccountAutomationState, world.account_id)
        assert state is not None and state.throttled_until is not None
        assert (state.throttled_until - world.now()).total_seconds() == pytest.approx(120, abs=2)

    world.drive()
    world.assert_reply_then_dm_once(comment_id)
    assert "throttled" in _steps(world, comment_id)


def test_high_usage_headers_space_calls_out(world: World) -> None:
    world.add_rule()
    world.engine._note_usage(world.account_id, Usage(app=PlatformUsage(call_count=96.0)))
    comment_id = world.comment("link")
    world.drive(advance=False)
    assert world.outbox() == []
    world.drive()
    world.assert_reply_then_dm_once(comment_id)


@pytest.mark.parametrize(
    ("code", "subcode", "reason"),
    [
        (10, 2534022, "outside_window"),
        (551, 1545041, "user_unavailable"),
        (100, 2534014, "user_not_found"),
        (10, None, "permission_denied"),
        (100, None, "invalid_request"),
    ],
)
def test_final_errors_end_the_run_with_the_reason(world: World, code: int, subcode: int | None, reason: str) -> None:
    world.add_rule()
    world.state.inject_failure(MESSAGES, kind="error", code=code, subcode=subcode)
    comment_id = world.comment("link")
    world.drive()
    run = world.run_for(comment_id)
    assert (run.status, run.reason) == ("failed", reason)
    assert run.dm_state == SendState.NONE.value
    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["public_reply"]


def test_a_refused_public_reply_does_not_stop_the_dm(world: World) -> None:
    world.add_rule()
    world.state.inject_failure(REPLIES, kind="error", code=100, message="(#100) You cannot reply to a hidden comment")
    comment_id = world.comment("link")
    world.drive()
    assert [e.kind for e in world.outbox(comment_id=comment_id)] == ["private_reply"]
    run = world.run_for(comment_id)
    assert (run.status, run.public_reply_state) == ("done", SendState.FAILED.value)


def test_invalid_token_pauses_the_account_and_resumes_after_reauthorisation(world: World) -> None:
    world.add_rule(once_per_user=False)
    first = world.comment("link", username="first.person")
    second = world.comment("link", username="second.person")
    world.state.inject_failure(REPLIES, kind="error", code=190, subcode=460)

    world.drive()

    assert world.outbox() == []
    assert {(r.status, r.reason) for r in world.runs()} == {("paused", "account_needs_reauth")}
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None and account.token_status == TokenStatus.INVALID.value
        assert account.automation_paused

    # A comment arriving meanwhile waits too.
    third = world.comment("link", username="third.person")
    assert (world.run_for(third).status, world.run_for(third).reason) == ("paused", "account_needs_reauth")
    world.drive()
    assert world.outbox() == []

    # The owner reconnects the account; the accounts domain calls resume_paused_runs.
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        account.token_status = TokenStatus.VALID.value
        account.reauthorization_required = False
        account.token_status_reason = None
    with world.runtime.session() as session:
        assert resume_paused_runs(session=session, account_id=world.account_id, runtime=world.runtime) == 3
    world.drive()

    for comment_id in (first, second, third):
        world.assert_reply_then_dm_once(comment_id)


def test_the_sweeper_resumes_runs_of_an_account_repaired_elsewhere(world: World) -> None:
    world.add_rule()
    world.state.inject_failure(MESSAGES, kind="error", code=190)
    comment_id = world.comment("link")
    world.drive()
    assert world.run_for(comment_id).status == "paused"
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        account.token_status, account.reauthorization_required = TokenStatus.VALID.value, False
    assert world.engine.sweep() >= 1
    world.drive()
    world.assert_reply_then_dm_once(comment_id)


def test_paused_past_the_window_fails_without_sending(world: World) -> None:
    world.add_rule()
    world.state.inject_failure(REPLIES, kind="error", code=190)
    comment_id = world.comment("link")
    world.drive()
    world.advance(days=8)
    with world.runtime.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        account.token_status, account.reauthorization_required = TokenStatus.VALID.value, False
        resume_paused_runs(session=session, account_id=world.account_id, runtime=world.runtime)
    world.drive()
    run = world.run_for(comment_id)
    assert (run.status, run.reason) == ("failed", "outside_window")
    assert world.outbox() == []


def test_a_run_is_worked_on_by_one_worker_at_a_time(world: World) -> None:
    world.add_rule()
    comment_id = world.comment("link")
    run_id = world.run_for(comment_id).id
    from replyflow.automation.engine import _Lease

    lease = _Lease(run_id=run_id, owner="someone-else")
    assert world.engine._claim(lease, world.now())
    assert world.engine.process_run(run_id) is Outcome.NOT_CLAIMED
    assert world.outbox() == []
    world.advance(seconds=31)  # the other worker died; its lease ran out
    world.drive()
    world.assert_reply_then_dm_once(comment_id)


def test_busy_accounts_yield_to_others(world: World) -> None:
    """At most two runs of one account are in flight; a third is handed back for later, not blocked on."""
    from replyflow.automation.engine import _Lease

    world.add_rule(once_per_user=False)
    ids = [world.comment("link", username=f"p{i}") for i in range(3)]
    runs = [world.run_for(c).id for c in ids]
    for i, run_id in enumerate(runs[:2]):
        assert world.engine._claim(_Lease(run_id=run_id, owner=f"w{i}"), world.now())
    world.jobs.clear()
    assert world.engine.process_run(runs[2]) is Outcome.BUSY_ACCOUNT
    assert [job[0] for job in world.jobs] == [runs[2]]
    assert world.jobs[0][1] is not None and world.jobs[0][1] > 0


def test_the_sweeper_requeues_lost_jobs_and_expired_leases(world: World) -> None:
    from replyflow.automation.engine import _Lease
    from replyflow.automation.models import Run

    world.add_rule(once_per_user=False)
    lost = world.comment("link", username="lost.job")
    held = world.comment("link", username="dead.worker")
    held_id = world.run_for(held).id
    assert world.engine._claim(_Lease(run_id=held_id, owner="dead"), world.now())
    world.jobs.clear()

    assert world.engine.sweep() == 0  # nothing is overdue yet
    world.advance(seconds=45)
    enqueued = world.engine.sweep()

    assert enqueued == 2
    assert {job[0] for job in world.jobs} == {world.run_for(lost).id, held_id}
    with world.runtime.session() as session:
        assert session.scalar(select(Run.lease_owner).where(Run.id == held_id)) == "dead"


def test_a_bare_613_on_the_dm_makes_only_that_run_wait(world: World) -> None:
    """Meta refuses a DM with 613 and no usage headers (its count and ours disagree): the slot is given back and
    the run waits its turn again, without throttling the whole account for Meta's default five minutes."""
    world.add_rule()
    world.state.inject_failure(MESSAGES, kind="error", code=613)
    comment_id = world.comment("link")

    world.drive(advance=False)
    run = world.run_for(comment_id)
    assert run.status == RunStatus.WAITING_QUOTA.value
    assert run.dm_state == SendState.NONE.value
    with world.runtime.session() as session:
        state = session.get(AccountAutomationState, world.account_id)
        assert state is None or state.throttled_until is None
    assert world.engine.gate.used(account_id=world.account_id, now=world.now()) == 0

    world.drive()
    world.assert_reply_then_dm_once(comment_id)
