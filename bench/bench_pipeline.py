"""The pipeline end to end: signed webhook in → public reply → private reply DM out, on one `replyflow serve`.

Set-up, as a user would run it: one `replyflow serve` (web server + worker in-process) on SQLite with real
credentials pointed at a local Graph API stand-in (``bench/graph_standin.py``, its own process; it answers in well
under a millisecond and, like Meta, echoes our reply and our DM back as webhooks). One connected account, one rule
(keyword "link", public reply + DM). Measured:

* **burst**: N matching comments (default 1,000) posted by 16 concurrent senders; throughput is N over the time
  from the first webhook sent to the last DM reaching the stand-in (budget ≥ 300/s), with the CPU seconds
  replyflow's process used per comment and its peak RSS;
* **idle latency**: single comments on an otherwise idle server, webhook sent → DM received by the stand-in
  (budget p50 ≤ 20 ms, p99 ≤ 50 ms), and the first comment after a quiet spell (``BENCH_QUIET_SECONDS``, default 60:
  no idle-poll delay allowed).

Exactly-once is checked too: every comment got one DM, and no more DMs than comments reached the stand-in.
Results are printed and written to ``bench/results/pipeline.json``. Knobs: ``BENCH_COMMENTS``, ``BENCH_SENDERS``,
``BENCH_IDLE_SAMPLES``, ``BENCH_QUIET_SECONDS``, ``BENCH_ECHOES`` (1/0).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import SECRET, free_port, sign, wait_http

APP_ID = "100000000000077"
IG_ID = "17841400000000001"
PAGE_ID = "100200300400500"
MEDIA_ID = "17900000000000001"
COMMENTS = int(os.environ.get("BENCH_COMMENTS", "1000"))
SENDERS = int(os.environ.get("BENCH_SENDERS", "16"))
IDLE_SAMPLES = int(os.environ.get("BENCH_IDLE_SAMPLES", "50"))
QUIET_SECONDS = float(os.environ.get("BENCH_QUIET_SECONDS", "60"))
ECHOES = os.environ.get("BENCH_ECHOES", "1") == "1"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def comment_delivery(comment_id: str, n: int, *, ig_id: str = IG_ID, media_id: str = MEDIA_ID) -> bytes:
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": ig_id,
                "time": int(time.time()),
                "changes": [
                    {
                        "field": "comments",
                        "value": {
                            "id": comment_id,
                            "text": "link please!",
                            "from": {"id": f"99{n:010d}", "username": f"fan{n}"},
                            "media": {"id": media_id, "media_product_type": "FEED"},
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def replyflow_env(tmp: str, graph_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}
    env.update(
        REPLYFLOW_DATABASE_URL=f"sqlite:///{tmp}/replyflow.db",
        REPLYFLOW_DATA_DIR=f"{tmp}/data",
        REPLYFLOW_META_APP_ID=APP_ID,
        REPLYFLOW_META_APP_SECRET=SECRET,
        REPLYFLOW_SANDBOX="0",
        REPLYFLOW_WEBHOOK_VERIFY_TOKEN="bench-verify-token",
        REPLYFLOW_SECRET_KEY="bench-key-0123456789abcdef0123456789",
        REPLYFLOW_GRAPH_API_URL=f"http://127.0.0.1:{graph_port}",
        REPLYFLOW_LOG_JSON="1",
        # "No quota pressure": Meta's 750/hour would turn a 1,000-comment burst into a quota test (bench_quota).
        REPLYFLOW_PRIVATE_REPLY_QUOTA="1000000/3600",
    )
    if os.environ.get("BENCH_LOG_LEVEL"):
        env["REPLYFLOW_LOG_LEVEL"] = os.environ["BENCH_LOG_LEVEL"]
    env.update(extra)
    return env


SEED = """
import json, sys
from replyflow.config import Settings
from replyflow.runtime import Runtime
from replyflow.db import migrate
from replyflow.accounts.crypto import cipher_for
from replyflow.accounts.models import Account
from replyflow.automation.models import Rule
from replyflow.automation.schemas import RuleSpec
from replyflow.workspaces import service as workspaces

accounts = json.loads(sys.argv[1])
settings = Settings()
migrate(settings.database_url)
runtime = Runtime(settings)
cipher = cipher_for(settings)
with runtime.session() as session:
    ws, _ = workspaces.create_workspace(session=session, name="bench")
    for ig_id, page_id, media_id in accounts:
        account = Account(workspace_id=ws.id, page_id=page_id, page_name="Bench Page", instagram_id=ig_id,
                          username="bench.account", token_ciphertext=cipher.encrypt("EAAB" + "x" * 60),
                          scopes=["pages_show_list", "pages_manage_metadata", "pages_read_engagement",
                                  "instagram_basic", "instagram_manage_comments", "instagram_manage_messages"])
        session.add(account)
        session.flush()
        spec = RuleSpec.model_validate({
            "name": "bench", "posts": {"mode": "specific", "media_ids": [media_id]}, "keywords": ["link"],
            "public_reply": {"texts": ["Sent you a DM!"]}, "private_reply": {"text": "Here is the link"}})
        rule = Rule(workspace_id=ws.id, account_id=account.id)
        rule.apply_spec(spec)
        session.add(rule)
runtime.close()
"""


def seed(env: dict[str, str], accounts: list[tuple[str, str, str]]) -> None:
    subprocess.run([sys.executable, "-c", SEED, json.dumps(accounts)], env=env, check=True, cwd=ROOT)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Deployment:
    """The stand-in and one `replyflow serve`, started in a temporary folder."""

    def __init__(
        self,
        tmp: str,
        *,
        accounts: list[tuple[str, str, str]],
        extra_env: dict[str, str] | None = None,
        meta_quota: str | None = None,
    ):
        self.meta_quota = meta_quota
        self.tmp = tmp
        self.graph_port = free_port()
        self.port = free_port()
        self.env = replyflow_env(tmp, self.graph_port, **(extra_env or {}))
        self.accounts = accounts
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Deployment:
        seed(self.env, self.accounts)
        webhook = f"http://127.0.0.1:{self.port}/webhooks/instagram"
        standin = [sys.executable, "-m", "bench.graph_standin", "--port", str(self.graph_port)]
        standin += ["--app-secret", SECRET, "--ig-id", self.accounts[0][0]]
        if ECHOES:
            standin += ["--webhook-url", webhook]
        if self.meta_quota:
            standin += ["--quota", self.meta_quota]
        self.standin = self.start(standin, "standin")
        wait_http(f"http://127.0.0.1:{self.graph_port}/_bench/stats", self.standin)
        serve = [sys.executable, "-m", "replyflow", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        profile = os.environ.get("BENCH_PYSPY")  # a file: record replyflow serve with py-spy (collapsed stacks)
        if profile:
            mode = "--gil" if os.environ.get("BENCH_PYSPY_GIL") else "--threads"  # --gil: Python CPU only
            serve = ["py-spy", "record", "--format", "raw", mode, "--output", profile, "--", *serve]
        self.serve = self.start(serve, "serve")
        wait_http(f"http://127.0.0.1:{self.port}/healthz", self.serve)
        return self

    def start(self, cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(Path(self.tmp) / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def __exit__(self, *_: object) -> None:
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT; uvicorn stops on either
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/instagram"

    def stats(self, since: float = 0.0) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.graph_port}/_bench/stats"
        return httpx.get(url, params={"since": since}, timeout=10).json()  # type: ignore[no-any-return]


async def send_burst(url: str, bodies: list[bytes], senders: int) -> tuple[float, int]:
    """Post every body with ``senders`` concurrent connections; returns (time the first was sent, non-200s)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    failures = 0
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def sender() -> None:
            nonlocal failures
            while not queue.empty():
                body = queue.get_nowait()
                headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 200:
                    failures += 1

        started = time.time()
        await asyncio.gather(*(sender() for _ in range(senders)))
    return started, failures


def wait_for_dms(dep: Deployment, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    stats = dep.stats()
    while stats["distinct_dms"] < count and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = dep.stats()
    return stats


def one_comment_latency(dep: Deployment, client: httpx.Client, comment_id: str, n: int) -> float:
    """Seconds from sending the webhook to the stand-in receiving the DM."""
    body = comment_delivery(comment_id, n)
    headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
    sent = time.time()
    response = client.post(dep.webhook_url, content=body, headers=headers)
    response.raise_for_status()
    answer = client.get(
        f"http://127.0.0.1:{dep.graph_port}/_bench/wait", params={"comment_id": comment_id, "timeout": "30"}
    )
    if answer.status_code != 200:
        raise RuntimeError(f"no DM for {comment_id} within 30 s")
    return float(answer.json()["at"]) - sent


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    result: dict[str, Any] = {
        "comments": COMMENTS,
        "senders": SENDERS,
        "echoes": ECHOES,
        "machine_cores": os.cpu_count(),
    }
    keep = os.environ.get("BENCH_KEEP")  # a folder: keep the database and the processes' logs there
    with (
        tempfile.TemporaryDirectory() as scratch,
        Deployment(keep or scratch, accounts=[(IG_ID, PAGE_ID, MEDIA_ID)]) as dep,
    ):
        with httpx.Client(timeout=60) as client:
            for i in range(5):  # warm-up: first requests build caches, connection pools, prepared statements
                one_comment_latency(dep, client, f"1790{i:012d}", i)
        base = 100_000
        bodies = [comment_delivery(f"1791{base + i:012d}", base + i) for i in range(COMMENTS)]
        cpu_before = proc_cpu_seconds(dep.serve.pid)
        started, failures = asyncio.run(send_burst(dep.webhook_url, bodies, SENDERS))
        acked_at = time.time()
        stats = wait_for_dms(dep, COMMENTS + 5, timeout=max(120.0, COMMENTS / 5))
        done = stats["distinct_dms"] - 5
        elapsed = (stats["last_dm_at"] or time.time()) - started
        time.sleep(1.0)  # let the echoes settle before reading CPU
        cpu = proc_cpu_seconds(dep.serve.pid) - cpu_before
        final = dep.stats()
        result["burst"] = {
            "sent": COMMENTS,
            "non_200": failures,
            "ingest_seconds": round(acked_at - started, 3),
            "dms": done,
            "duplicate_dms": final["dms"] - final["distinct_dms"] - final["refused_second_dms"],
            "public_replies": final["replies"] - 5,
            "seconds": round(elapsed, 3),
            "comments_per_second": round(done / elapsed, 1) if elapsed > 0 else None,
            "cpu_ms_per_comment": round(cpu * 1000 / max(done, 1), 2),
            "peak_rss_mb": round(proc_peak_rss_mb(dep.serve.pid), 1),
        }
        latencies: list[float] = []
        with httpx.Client(timeout=60) as client:
            for i in range(IDLE_SAMPLES):
                time.sleep(0.2)
                latencies.append(one_comment_latency(dep, client, f"1792{i:012d}", 500_000 + i))
            quiet = None
            if QUIET_SECONDS > 0:
                time.sleep(QUIET_SECONDS)
                quiet = one_comment_latency(dep, client, "179300000000001", 600_000)
        ms = [x * 1000 for x in latencies]
        result["idle"] = {
            "samples": len(ms),
            "p50_ms": round(pct(ms, 0.5), 1),
            "p99_ms": round(pct(ms, 0.99), 1),
            "max_ms": round(max(ms), 1),
            "mean_ms": round(statistics.mean(ms), 1),
            "after_quiet_seconds": QUIET_SECONDS,
            "after_quiet_ms": round(quiet * 1000, 1) if quiet is not None else None,
        }
    burst, idle = result["burst"], result["idle"]
    print(f"burst: {burst['dms']}/{COMMENTS} comments answered (reply + DM) in {burst['seconds']} s, {SENDERS} senders")
    print(f"  throughput {burst['comments_per_second']} comments/s (budget >= 300)")
    print(f"  CPU {burst['cpu_ms_per_comment']} ms per comment in replyflow serve; peak RSS {burst['peak_rss_mb']} MB")
    print(f"  duplicate DMs: {burst['duplicate_dms']}; non-200 webhooks: {burst['non_200']}")
    print(
        f"idle: webhook -> DM p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms (budget 20 / 50), max {idle['max_ms']}"
    )
    if idle["after_quiet_ms"] is not None:
        print(f"  first comment after {QUIET_SECONDS:.0f} s quiet: {idle['after_quiet_ms']} ms")
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    if burst["dms"] < COMMENTS or burst["duplicate_dms"]:
        raise SystemExit("the burst did not complete exactly once")


if __name__ == "__main__":
    main()
