"""Webhook ingest: replyflow's stored-before-200 path against a bare signature-checking ASGI app.

Both run under uvicorn on loopback, one at a time, and receive the same signed `comments` deliveries. The load
comes from wrk (Debian's package; a C client, so the client does not eat the two cores the server needs) when it
is installed, else from an httpx client in this process. Reported: requests/s for each, the ratio (budget:
≥ 0.8, issue 12) and replyflow's latency percentiles (budget: p99 < 50 ms on SQLite), plus a check that every delivery
acknowledged was stored. Run with ``make bench`` or ``python -m bench.bench_ingest``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import SECRET, free_port, sign, wait_http

REQUESTS = int(os.environ.get("BENCH_INGEST_REQUESTS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_INGEST_CONCURRENCY", "8"))


def _delivery(i: int) -> bytes:
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": "17841400000000001",
                "time": 1764400000 + i,
                "changes": [
                    {
                        "field": "comments",
                        "value": {
                            "id": f"1790{i:012d}",
                            "text": "link please",
                            "from": {"id": f"99{i:08d}", "username": f"fan{i}"},
                            "media": {"id": "17900000000000001", "media_product_type": "FEED"},
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


async def _load(url: str, bodies: list[bytes]) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                body = queue.get_nowait()
                headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
                started = time.perf_counter()
                resp = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if resp.status_code != 200:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return len(bodies) / elapsed, latencies, failures


WRK = shutil.which("wrk")
DURATION = int(os.environ.get("BENCH_INGEST_SECONDS", "10"))


@dataclass
class Result:
    rate: float
    p50: float
    p95: float
    p99: float
    mean: float
    acknowledged: int
    errors: int


def _wrk(base: str, body: bytes) -> Result:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        env = dict(os.environ, BENCH_PATH="/webhooks/instagram", BENCH_BODY_FILE=f.name, BENCH_SIGNATURE=sign(body))
        script = str(Path(__file__).with_name("wrk_post.lua"))
        subprocess.run([WRK, "-t1", "-c4", "-d2s", "-s", script, base], env=env, capture_output=True, check=True)
        out = subprocess.run(
            [WRK, "-t1", f"-c{CONCURRENCY}", f"-d{DURATION}s", "-s", script, base],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    requests, micros, p50, p95, p99, mean, errors = line.split()[1:]
    total = int(requests)
    return Result(
        rate=total / (int(micros) / 1e6),
        p50=float(p50),
        p95=float(p95),
        p99=float(p99),
        mean=float(mean),
        acknowledged=total - int(errors),
        errors=int(errors),
    )


def _httpx(url: str, bodies: list[bytes]) -> Result:
    asyncio.run(_load(url, bodies[:200]))  # warm-up
    rate, latencies, failures = asyncio.run(_load(url, bodies[200:]))
    return Result(
        rate=rate,
        p50=_pct(latencies, 0.5),
        p95=_pct(latencies, 0.95),
        p99=_pct(latencies, 0.99),
        mean=statistics.mean(latencies) * 1000,
        acknowledged=len(bodies) - 200 - failures,
        errors=failures,
    )


def _measure(cmd: list[str], env: dict[str, str], health: str, base: str, bodies: list[bytes]) -> Result:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(health, proc)
        return _wrk(base, bodies[0]) if WRK else _httpx(f"{base}/webhooks/instagram", bodies)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    bodies = [_delivery(i) for i in range(REQUESTS + 200)]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYFLOW_")}

    port = free_port()
    bare_env = dict(base_env, BENCH_APP_SECRET=SECRET, PYTHONPATH=str(Path(__file__).parent.parent))
    bare = _measure(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        bare_env,
        f"http://127.0.0.1:{port}/",
        f"http://127.0.0.1:{port}",
        bodies,
    )

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = dict(
            base_env,
            REPLYFLOW_DATABASE_URL=f"sqlite:///{tmp}/bench.db",
            REPLYFLOW_DATA_DIR=f"{tmp}/data",
            REPLYFLOW_META_APP_ID="100000000000001",
            REPLYFLOW_META_APP_SECRET=SECRET,
            REPLYFLOW_WEBHOOK_VERIFY_TOKEN="bench-verify-token",
            REPLYFLOW_SECRET_KEY="bench-key-0123456789abcdef0123456789",
            REPLYFLOW_LOG_LEVEL="WARNING",
        )
        ours = _measure(
            [sys.executable, "-m", "replyflow", "serve", "--no-worker", "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/healthz",
            f"http://127.0.0.1:{port}",
            bodies,
        )
        with sqlite3.connect(f"{tmp}/bench.db") as db:
            stored = db.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0]

    ratio = ours.rate / bare.rate
    client = f"wrk, {CONCURRENCY} connections, {DURATION} s" if WRK else f"httpx, {CONCURRENCY} concurrent"
    print(f"load: {client}; SQLite, replyflow serve --no-worker")
    print(f"bare signature-checking ASGI app:   {bare.rate:8.0f} req/s  p99 {bare.p99:6.1f} ms")
    print(
        f"replyflow POST /webhooks/instagram: {ours.rate:8.0f} req/s  p99 {ours.p99:6.1f} ms  "
        f"(p50 {ours.p50:.1f}, p95 {ours.p95:.1f}, mean {ours.mean:.1f}; non-200: {ours.errors})"
    )
    print(f"ingest ratio: {ratio:.2f} (budget >= 0.80) {'OK' if ratio >= 0.8 else 'BELOW BUDGET'}")
    print(f"p99 stored-and-acknowledged: {ours.p99:.1f} ms (budget < 50) {'OK' if ours.p99 < 50 else 'OVER BUDGET'}")
    print(
        f"deliveries acknowledged: {ours.acknowledged}, stored: {stored} "
        f"{'OK' if stored >= ours.acknowledged else 'LOST DELIVERIES'}"
    )


if __name__ == "__main__":
    main()
