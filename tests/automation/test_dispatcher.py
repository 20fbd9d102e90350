"""The dispatcher's claims: fair between accounts in one statement, and a dead process's leases freed at once."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from sqlalchemy import select, update

from replyflow.automation.engine import lease_owner_process
from replyflow.automation.models import Run

from .world import World, connect_account, seed_sandbox_account


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _matched_run(world: World, username: str) -> Run:
    run = world.run_for(world.comment("link please", username=username))
    assert run.status == "matched"
    return run


def test_claims_take_every_accounts_first_run_before_anyones_second(world: World) -> None:
    world.add_rule()
    busy = [_matched_run(world, f"fan.{i}").id for i in range(4)]
    other = seed_sandbox_account(world.state, username="other.shop")
    _, other_account = connect_account(world.runtime, other, workspace_id=world.workspace_id)
    with world.runtime.session() as session:
        late = session.scalar(select(Run).where(Run.id == busy[-1]))
        assert late is not None
        session.add(Run(workspace_id=world.workspace_id, account_id=other_account, comment_id="c-other",
                        media_id=other.media_ids[0], text="link", status="matched", source="webhook",
                        next_attempt_at=late.next_attempt_at))  # fmt: skip

    claimed = world.engine.claim_due(limit=2, per_account=3)

    assert {c.account_id for c in claimed} == {world.account_id, other_account}
    assert world.engine.claim_due(limit=10, per_account=1) != []  # one more of the busy account, capped at 1
    rest = world.engine.claim_due(limit=10, per_account=10)
    assert len(claimed) + 1 + len(rest) == 5


def test_a_restarted_process_frees_its_dead_predecessors_leases_at_once(world: World) -> None:
    world.add_rule()
    run = _matched_run(world, "fan.a")
    host = world.engine.worker_name.rsplit(":", 1)[0]
    dead_owner = f"{host}:{_dead_pid()}:abcdef0123"
    live_owner = f"{world.engine.worker_name}:0123abcdef"
    lease_end = world.now() + dt.timedelta(seconds=30)
    other = _matched_run(world, "fan.b")
    with world.runtime.session() as session:
        session.execute(update(Run).where(Run.id == run.id).values(lease_owner=dead_owner, lease_expires_at=lease_end))
        session.execute(
            update(Run).where(Run.id == other.id).values(lease_owner=live_owner, lease_expires_at=lease_end)
        )
    assert world.engine.claim_due(limit=10, per_account=10) == []

    assert world.engine.release_dead_leases() == 1

    claimed = world.engine.claim_due(limit=10, per_account=10)
    assert [c.run_id for c in claimed] == [run.id]  # the live process's run stays its own


def test_lease_owners_name_their_process() -> None:
    assert lease_owner_process("web-1:4242:abcdef0123") == ("web-1", 4242)
    assert lease_owner_process("legacy-owner") is None


def test_the_heartbeat_keeps_a_live_processs_leases_and_only_those(world: World) -> None:
    world.add_rule()
    ours = _matched_run(world, "fan.c")
    claimed = world.engine.claim_due(limit=10, per_account=10)
    assert [c.run_id for c in claimed] == [ours.id]
    world.advance(seconds=20)

    assert world.engine.renew_leases(claimed) == 1

    world.advance(seconds=20)  # 40 s after the claim: past the first lease, inside the renewed one
    assert world.engine.claim_due(limit=10, per_account=10) == []
    with world.runtime.session() as session:
        session.execute(update(Run).where(Run.id == ours.id).values(lease_owner="someone-else:1:x"))
    assert world.engine.renew_leases(claimed) == 0  # a lease taken over is never renewed by its old holder
