"""The command line: help, workspace creation with a once-shown key, key management, worker shutdown, serve."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPLYFLOW = [sys.executable, "-m", "replyflow"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env["REPLYFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["REPLYFLOW_DATA_DIR"] = str(tmp_path / "data")
    return env


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REPLYFLOW, *args], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--help")
    assert proc.returncode == 0
    for command in ("serve", "worker", "migrate", "workspace"):
        assert command in proc.stdout
    for sub in (["serve", "--help"], ["worker", "--help"], ["workspace", "create", "--help"]):
        assert _run(tmp_path, *sub).returncode == 0
    assert _run(tmp_path, "no-such-command").returncode == 2


def test_workspace_create_and_keys(tmp_path: Path) -> None:
    proc = _run(tmp_path, "workspace", "create", "Roastery", "--json")
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(created) == {"workspace_id", "api_key"}
    key = created["api_key"]
    assert key.startswith("rf_")
    assert key.encode() not in (tmp_path / "cli.db").read_bytes(), "keys are stored hashed only"

    again = _run(tmp_path, "workspace", "create", "Roastery", "--json")
    assert again.returncode == 1 and "already exists" in again.stderr

    listed = json.loads(_run(tmp_path, "workspace", "keys", "list", "Roastery", "--json").stdout.splitlines()[-1])
    assert [k["prefix"] for k in listed["items"]] == [key[:11]]

    rotated = json.loads(
        _run(tmp_path, "workspace", "keys", "rotate", "Roastery", key[:11], "--json").stdout.splitlines()[-1]
    )
    assert rotated["api_key"] != key
    listed = json.loads(_run(tmp_path, "workspace", "keys", "list", "Roastery", "--json").stdout.splitlines()[-1])
    assert [k["revoked"] for k in listed["items"]] == [True, False]
    revoke = _run(tmp_path, "workspace", "keys", "revoke", created["workspace_id"], rotated["api_key"][:11])
    assert revoke.returncode == 0, revoke.stderr


def test_migrate(tmp_path: Path) -> None:
    proc = _run(tmp_path, "migrate")
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*REPLYFLOW, "worker", "--concurrency", "2"],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "data" / "queue.db").exists():
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "worker_stopped" in err


def _get_when_up(proc: subprocess.Popen[str], url: str, *, within: float) -> httpx.Response:
    """GET ``url`` once the process started listening; fail if it exits or does not answer in time."""
    deadline = time.monotonic() + within
    while True:
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port = _free_port()
    proc = subprocess.Popen(
        [*REPLYFLOW, "worker", "--concurrency", "1", "--metrics-port", str(port)],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resp = _get_when_up(proc, f"http://127.0.0.1:{port}/metrics", within=30)
        assert resp.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(resp.text)}
        assert families["replyflow_graph_request_duration_seconds"].type == "histogram"
        assert {"replyflow_webhook_deliveries", "replyflow_webhook_events"} <= set(families)
        # Only this process's series: the database gauges belong to the app's /metrics.
        assert "replyflow_runs" not in families
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        proc.kill()


@pytest.mark.slow
def test_serve_answers_healthz(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*REPLYFLOW, "serve", "--port", str(port)],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resp = _get_when_up(proc, f"http://127.0.0.1:{port}/healthz", within=45)
        assert resp.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught (exit status -15).
        assert proc.returncode in (0, -signal.SIGTERM), err
        assert "worker_stopped" in err, "the embedded worker was shut down cleanly"
    finally:
        proc.kill()
