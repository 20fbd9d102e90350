"""CPU per comment on the hot path, stage by stage, in one thread: what each part of the pipeline costs.

``bench_pipeline`` measures the whole deployment (HTTP, threads, the stand-in); its CPU figure moves with
everything else the machine does. This one isolates the Python work replyflow does per comment, so a change to
the hot path can be judged in seconds and on a busy machine (it counts CPU time of this process, not wall time):

1. store the comment deliveries with the webhook writer (the request path's group commit);
2. process them (``webhooks.service.drain``: parse, events, rule evaluation, runs);
3. drive the runs (``Engine.claim_due`` + ``Engine.drive``: public reply, DM, every state write), with the Graph
   client's real code over an in-memory transport that answers as Meta does;
4. store and process Meta's two echoes of each comment (our reply as a comment, our DM as a message echo).

Knobs: ``BENCH_COMMENTS`` (default 500), ``BENCH_PROFILE=1`` prints the top functions of stages 2–4 (cProfile).
Results: printed and written to ``bench/results/hotpath.json``.
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import io
import itertools
import json
import os
import pstats
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.bench_pipeline import IG_ID, MEDIA_ID, PAGE_ID, comment_delivery, replyflow_env, seed

COMMENTS = int(os.environ.get("BENCH_COMMENTS", "500"))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
SQL = os.environ.get("BENCH_SQL") == "1"  # print the statements each stage ran, counted
RESULTS = Path(__file__).resolve().parent / "results"


class Meta:
    """Answers the two calls a comment costs, as Meta does, and keeps the echoes Meta would send back."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.echoes: list[bytes] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = [p for p in request.url.path.split("/") if p][1:]  # without the version
        if request.method == "POST" and len(parts) == 2 and parts[1] == "replies":
            reply_id = f"1800{next(self.ids):012d}"
            text = dict(httpx.QueryParams(request.content.decode())).get("message", "")
            self.echoes.append(_echo_comment(parts[0], reply_id, text))
            return httpx.Response(200, json={"id": reply_id})
        if request.method == "POST" and len(parts) == 2 and parts[1] == "messages":
            data = json.loads(request.content)
            message_id = f"m_{next(self.ids)}"
            recipient = f"55{next(self.ids):010d}"
            self.echoes.append(_echo_message(recipient, message_id, data.get("message", {}).get("text", "")))
            return httpx.Response(200, json={"recipient_id": recipient, "message_id": message_id})
        return httpx.Response(200, json={"data": []})


def _echo_comment(parent_id: str, reply_id: str, text: str) -> bytes:
    value = {
        "id": reply_id,
        "text": text,
        "parent_id": parent_id,
        "from": {"id": IG_ID, "username": "bench.account"},
        "media": {"id": MEDIA_ID, "media_product_type": "FEED"},
    }
    entry = {"id": IG_ID, "time": int(time.time()), "changes": [{"field": "comments", "value": value}]}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def _echo_message(recipient: str, message_id: str, text: str) -> bytes:
    event = {
        "sender": {"id": IG_ID},
        "recipient": {"id": recipient},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": message_id, "text": text, "is_echo": True},
    }
    entry = {"id": IG_ID, "time": int(time.time()), "messaging": [event]}
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


CURRENT = ["setup"]


@contextmanager
def stage(name: str, results: dict[str, float], profiler: cProfile.Profile | None) -> Iterator[None]:
    if profiler is not None:
        profiler.enable()
    CURRENT[0] = name
    start = time.process_time()
    try:
        yield
    finally:
        results[name] = results.get(name, 0.0) + time.process_time() - start
        if profiler is not None:
            profiler.disable()


def run() -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="replyflow-hotpath-")
    env = replyflow_env(tmp, 9)
    seed(env, [(IG_ID, PAGE_ID, MEDIA_ID)])
    os.environ.update(env)

    from sqlalchemy import event

    from replyflow import wakeup
    from replyflow.automation.engine import engine_for
    from replyflow.config import Settings
    from replyflow.graph_access import set_default_transport
    from replyflow.logging import configure_logging
    from replyflow.runtime import Runtime
    from replyflow.webhooks import service
    from replyflow.webhooks.writer import DeliveryWriter

    settings = Settings()
    # As `replyflow serve` does, with the log lines going nowhere: their formatting is counted, not the terminal.
    log_to = open(os.environ.get("BENCH_LOG_FILE", os.devnull), "w")  # noqa: SIM115 - for the process's life
    configure_logging(level=settings.log_level, json=settings.log_json, stream=log_to)
    meta = Meta()
    set_default_transport(lambda: httpx.MockTransport(meta.handle))
    runtime = Runtime(settings)

    class Noted:
        """Stands where serve's dispatcher is registered, so intake makes no queue hop the server would not."""

        def wake(self, delay: float | None = None) -> None:
            return None

    wakeup.register(runtime, wakeup.RUNS, Noted())
    engine = engine_for(runtime)
    statements: collections.Counter[str] = collections.Counter()
    current = CURRENT

    per_stage: collections.Counter[str] = collections.Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        per_stage[current[0]] += 1
        if SQL:
            text = re.sub(r"sa_savepoint_\d+", "sa_savepoint_N", " ".join(statement.split()))[:110]
            statements[f"{current[0]:<10} {text}"] += 1

    for bind in {runtime.engine, runtime.read_engine}:
        event.listen(bind, "before_cursor_execute", count)
    writer = DeliveryWriter(runtime.engine)
    profiler = cProfile.Profile() if PROFILE else None
    cpu: dict[str, float] = {}

    def store(bodies: list[bytes]) -> None:
        async def all_of() -> None:
            await asyncio.gather(*(writer.store(body=b, secret_index=0) for b in bodies))

        asyncio.run(all_of())

    def drive_all() -> int:
        driven = 0
        while True:
            claimed = engine.claim_due(limit=16, per_account=16)
            if not claimed:
                return driven
            for item in claimed:
                engine.drive(item)
                driven += 1

    comments = [comment_delivery(f"1790{n:012d}", n) for n in range(COMMENTS)]
    try:
        with stage("ingest", cpu, None):
            store(comments)
        with stage("deliveries", cpu, profiler):
            service.drain(runtime=runtime)
        with stage("engine", cpu, profiler):
            driven = drive_all()
        echoes, meta.echoes = meta.echoes, []
        with stage("ingest", cpu, None):
            store(echoes)
        with stage("echoes", cpu, profiler):
            service.drain(runtime=runtime)
        with stage("engine", cpu, profiler):
            driven += drive_all()  # whatever the echoes made due (nothing, when they are recognised as ours)
    finally:
        writer.stop()
        runtime.close()
        set_default_transport(None)
    per = {name: 1000 * seconds / COMMENTS for name, seconds in cpu.items()}
    result = {
        "comments": COMMENTS,
        "runs_driven": driven,
        "echoes": len(echoes),
        "cpu_ms_per_comment": {k: round(v, 3) for k, v in per.items()},
        "cpu_ms_per_comment_total": round(sum(per.values()), 3),
        "statements_per_comment": {k: round(per_stage[k] / COMMENTS, 2) for k in per},
        "statements_per_comment_total": round(sum(per_stage[k] for k in per) / COMMENTS, 2),
    }
    print(f"hot path, {COMMENTS} comments, one thread: CPU ms and SQL statements per comment")
    for name, value in per.items():
        print(f"  {name:<11} {value:7.3f} ms  {per_stage[name] / COMMENTS:6.2f} statements")
    total = sum(per_stage[k] for k in per) / COMMENTS
    print(
        f"  {'total':<11} {sum(per.values()):7.3f} ms  {total:6.2f} statements   ({driven} runs, {len(echoes)} echoes)"
    )
    for line, n in sorted(statements.items()):
        print(f"{n / COMMENTS:7.2f}  {line}")
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(45)
        print(out.getvalue())
        callers = os.environ.get("BENCH_CALLERS")  # a function name: who calls it
        if callers:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_callers(callers)
            print(out.getvalue())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hotpath.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    run()


if __name__ == "__main__":
    run()
