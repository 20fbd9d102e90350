"""Runs through the real queue: huey's consumer embedded (SqliteHuey) or on Redis (RedisHuey), one code path; and a
``replyflow worker`` process killed mid-run, after which a second worker finishes without sending anything twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from alembic import command
from sqlalchemy import select

from replyflow.automation.clock import use_clock
from replyflow.automation.matching import PostsMode
from replyflow.automation.models import Rule, Run
from replyflow.automation.quota import RedisQuotaGate
from replyflow.automation.schemas import RuleSpec
from replyflow.config import Settings
from replyflow.db import Base, alembic_config
from replyflow.queue import build_queue
from replyflow.runtime import Runtime
from replyflow.sandbox import SandboxState, create_sandbox_app
from replyflow.worker import EmbeddedWorker
from tests.webhooks.helpers import ingest

from .test_quota import REDIS_AVAILABLE, REDIS_URL
from .world import build_world, connect_account, seed_sandbox_account


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_runs_are_processed_by_the_queue_consumer(make_settings: Any, backend: str) -> None:
    if backend == "redis" and not REDIS_AVAILABLE:
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    settings: Settings = make_settings(redis_url=REDIS_URL) if backend == "redis" else make_settings()
    runtime = Runtime(settings)
    Base.metadata.create_all(runtime.engine)
    name = f"rf-test-{uuid.uuid4().hex[:10]}"
    runtime.queue = build_queue(settings, name=name)  # type: ignore[misc]  # a queue of this test's own
    prefix = f"{name}:quota:"
    gate = (
        RedisQuotaGate(url=REDIS_URL, quota=settings.private_reply_quota, prefix=prefix) if backend == "redis" else None
    )
    worker: EmbeddedWorker | None = None
    try:
        for world in build_world(runtime, gate=gate, real_queue=True):
            world.state.clock.unfreeze()  # huey schedules in real time
            with use_clock(world.state.now):
                world.add_rule()
                worker = EmbeddedWorker(runtime, concurrency=2)
                worker.start()
                comment_id = world.comment("link please")
                done = lambda w=world, c=comment_id: w.run_for(c).status == "done"  # noqa: E731
                wait_for(done, timeout=20, what="the run to finish")
                world.assert_reply_then_dm_once(comment_id)
                worker.stop()
                worker = None
    finally:
        if worker is not None:
            worker.stop()
        if gate is not None:
            gate.close()
        if backend == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=f"*{name}*"))
            if keys:
                client.delete(*keys)
            client.close()
        runtime.close()


# -- a worker process killed mid-run ------------------------------------------------------------------------------


class SandboxServer:
    """The emulator on a loopback port, for worker processes to call over real HTTP."""

    def __init__(self, state: SandboxState) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            create_sandbox_app(state), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> SandboxServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="the sandbox server")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def worker_env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env.update(
        REPLYFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'replyflow.db'}",
        REPLYFLOW_DATA_DIR=str(data_dir),
        REPLYFLOW_RUN_LEASE_SECONDS="3",
        REPLYFLOW_GRAPH_TIMEOUT_SECONDS="30",
        REPLYFLOW_LOG_JSON="1",
        REPLYFLOW_LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "replyflow", "worker", "--concurrency", "2"],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("endpoint", "kind"),
    [("POST /{comment-id}/replies", "public_reply"), ("POST /{page-id}/messages", "private_reply")],
)
def test_a_worker_killed_mid_call_loses_nothing_and_sends_nothing_twice(
    make_settings: Any, worker_env: dict[str, str], workers: Any, tmp_path: Path, endpoint: str, kind: str
) -> None:
    """Worker A is SIGKILLed while Meta holds its call (which did go through); worker B takes over the run after
    the lease runs out, reconciles the unknown outcome, and finishes: one public reply, then one DM."""
    port_env = {}
    settings: Settings = make_settings(database_url=worker_env["REPLYFLOW_DATABASE_URL"], run_lease_seconds=3)
    state = SandboxState(app_id=settings.app_id, app_secret=settings.app_secret)
    sandbox = seed_sandbox_account(state)
    runtime = Runtime(settings)
    # The schema from the models, marked as migrated, so the worker's own "migrate" finds nothing to do.
    Base.metadata.create_all(runtime.engine)
    command.stamp(alembic_config(settings.database_url), "head")
    try:
        with SandboxServer(state) as server:
            port_env["REPLYFLOW_GRAPH_API_URL"] = f"http://127.0.0.1:{server.port}/graph"
            worker_env.update(port_env)
            workspace_id, account_id = connect_account(runtime, sandbox)
            with runtime.session() as session:
                spec = RuleSpec.model_validate(
                    {
                        "name": "kill test",
                        "posts": {"mode": PostsMode.SPECIFIC.value, "media_ids": [sandbox.media_ids[0]]},
                        "keywords": ["link"],
                        "public_reply": {"texts": ["Sent you a DM!"]},
                        "private_reply": {"text": "Here is the link"},
                    }
                )
                rule = Rule(workspace_id=workspace_id, account_id=account_id)
                rule.apply_spec(spec)
                session.add(rule)
            # Meta accepts the call, then never answers: the worker is stuck in it when we kill it.
            state.inject_failure(endpoint, kind="timeout_after_send", hang_seconds=120)

            worker_a = workers("worker-a")
            comment = state.add_comment(sandbox.media_ids[0], text="link please", username="ana.cafe")
            ingest(runtime, [json.dumps(item.payload).encode() for item in state.take_pending_webhooks()])

            def sent(what: str) -> bool:
                return any(e.kind == what and e.comment_id == comment.id for e in state.outbox())

            wait_for(lambda: sent(kind), timeout=30, what=f"worker A's {kind} to reach the sandbox")
            worker_a.send_signal(signal.SIGKILL)
            worker_a.wait(timeout=10)

            def run() -> Run:
                with runtime.session() as session:
                    found = session.scalar(select(Run).where(Run.comment_id == comment.id))
                    assert found is not None
                    return found

            killed = run()
            assert killed.lease_owner is not None
            assert (killed.public_reply_state if kind == "public_reply" else killed.dm_state) == "attempting"

            # Worker B starts; once A's lease has run out, the sweeper hands the run over.
            workers("worker-b")
            lease_end = killed.lease_expires_at
            assert lease_end is not None
            wait_for(
                lambda: dt.datetime.now(dt.UTC) > lease_end + dt.timedelta(milliseconds=200),
                timeout=10,
                what="the lease to expire",
            )
            runtime.queue.enqueue("automation.sweep")
            wait_for(lambda: run().status == "done", timeout=30, what="worker B to finish the run")

            sent_for_comment = [e.kind for e in reversed(state.outbox()) if e.comment_id == comment.id]
            assert sent_for_comment == ["public_reply", "private_reply"]
            finished = run()
            if kind == "private_reply":
                assert finished.dm_reconciled and finished.dm_attempts == 2
            else:
                assert finished.public_reply_attempts == 1
            logs = b"".join((tmp_path / f"{name}.log").read_bytes() for name in ("worker-a", "worker-b"))
            assert comment.id.encode() in logs  # structured logs name the comment and the run
            assert finished.id.encode() in logs
            assert sandbox.page_token.encode() not in logs
    finally:
        runtime.close()
