"""An acknowledged delivery survives the server being SIGKILLed the moment the 200 arrives."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from alembic import command

from replyflow.db import Base, alembic_config, make_engine
from tests.webhooks.conftest import APP_SECRET, META_SETTINGS, comments_delivery, signed_headers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare_database(url: str) -> None:
    # The schema the models describe, marked as migrated, so ``serve`` finds it ready whatever the migration holds.
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    command.stamp(alembic_config(url), "head")


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    _prepare_database(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env.update({f"REPLYFLOW_{k.upper()}": str(v) for k, v in META_SETTINGS.items()})
    env.update(
        REPLYFLOW_DATABASE_URL=url,
        REPLYFLOW_DATA_DIR=str(tmp_path / "data"),
        REPLYFLOW_LOG_LEVEL="WARNING",
    )
    assert env["REPLYFLOW_META_APP_SECRET"] == APP_SECRET
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "replyflow", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 45
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate(timeout=10)
                raise AssertionError(f"server did not start: {err.decode()[-2000:]}") from None
            time.sleep(0.1)


def _stored(db: Path) -> dict[int, bytes]:
    conn = sqlite3.connect(db)
    try:
        return {int(i): bytes(b) for i, b in conn.execute("SELECT id, body FROM webhook_deliveries")}
    finally:
        conn.close()


@pytest.mark.slow
def test_acknowledged_delivery_survives_sigkill(tmp_path: Path) -> None:
    proc, base = _start(tmp_path)
    try:
        body = comments_delivery("17866000000003001")
        resp = httpx.post(f"{base}/webhooks/instagram", content=body, headers=signed_headers(body), timeout=10)
        os.kill(proc.pid, signal.SIGKILL)  # the very moment the 200 is in hand
        assert resp.status_code == 200
        delivery_id = resp.json()["delivery_id"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert _stored(tmp_path / "kill.db") == {delivery_id: body}


@pytest.mark.slow
def test_every_acknowledged_delivery_of_a_burst_survives_sigkill(tmp_path: Path) -> None:
    proc, base = _start(tmp_path)
    acknowledged: dict[int, bytes] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def send(i: int) -> None:
        body = comments_delivery(f"1786600000004{i:04d}")
        try:
            resp = httpx.post(f"{base}/webhooks/instagram", content=body, headers=signed_headers(body), timeout=10)
        except httpx.TransportError:
            return  # in flight when the process died: not acknowledged, so Meta would retry it
        if resp.status_code == 200:
            with lock:
                acknowledged[int(resp.json()["delivery_id"])] = body
                if len(acknowledged) >= 40:
                    enough.set()

    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(80)]
        for t in threads:
            t.start()
        enough.wait(timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        with lock:
            snapshot = dict(acknowledged)
        for t in threads:
            t.join(timeout=15)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert len(snapshot) >= 40
    stored = _stored(tmp_path / "kill.db")
    for delivery_id, body in snapshot.items():
        assert stored.get(delivery_id) == body, f"acknowledged delivery {delivery_id} was lost"
