"""Crash recovery: `kill -9` of `replyflow serve` in the middle of a burst, then a restart.

Same set-up as ``bench_pipeline`` (one `replyflow serve` on SQLite, the Graph stand-in in its own process). A burst
of ``BENCH_CRASH_COMMENTS`` (default 200) comments is acknowledged; once about a third of the DMs have gone out, the
server is killed with SIGKILL (runs are in flight: leased, mid-call, mid-commit) and started again at once on the same
database. Reported: how long after the restart the last acknowledged comment got its DM (budget: the rest resumes
within 5 s), and that nothing was lost or doubled — every comment one public reply and one DM. A second private
reply to the same comment is refused by the stand-in as Meta refuses it (100/2534025), so a reconciled re-attempt
is counted apart from a real duplicate. Results go to ``bench/results/crash.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any

from bench.bench_pipeline import IG_ID, MEDIA_ID, PAGE_ID, RESULTS, SENDERS, Deployment, comment_delivery, send_burst
from bench.common import wait_http

COMMENTS = int(os.environ.get("BENCH_CRASH_COMMENTS", "200"))


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, Deployment(tmp, accounts=[(IG_ID, PAGE_ID, MEDIA_ID)]) as dep:
        bodies = [comment_delivery(f"1794{i:012d}", 700_000 + i) for i in range(COMMENTS)]
        _, failures = asyncio.run(send_burst(dep.webhook_url, bodies, SENDERS))
        while dep.stats()["distinct_dms"] < COMMENTS // 3:
            time.sleep(0.005)
        dep.serve.send_signal(signal.SIGKILL)
        dep.serve.wait()
        at_kill = dep.stats()
        restarted = time.time()
        dep.serve = dep.start(
            [sys.executable, "-m", "replyflow", "serve", "--host", "127.0.0.1", "--port", str(dep.port)], "serve-2"
        )
        wait_http(f"http://127.0.0.1:{dep.port}/healthz", dep.serve)
        answering = time.time() - restarted
        deadline = time.monotonic() + 300
        stats = dep.stats()
        while stats["distinct_dms"] < COMMENTS and time.monotonic() < deadline:
            time.sleep(0.02)
            stats = dep.stats()
        finished = (stats["last_dm_at"] or time.time()) - restarted
        time.sleep(2)
        final = dep.stats(since=restarted)
    result: dict[str, Any] = {
        "comments": COMMENTS,
        "non_200": failures,
        "dms_before_kill": at_kill["distinct_dms"],
        "restart_to_answering_seconds": round(answering, 2),
        "restart_to_first_dm_seconds": round(final["first_dm_since"] - restarted, 2)
        if final["first_dm_since"]
        else None,
        "restart_to_last_dm_seconds": round(finished, 2),
        "lost": COMMENTS - final["distinct_dms"],
        "doubled_dms": final["dms"] - final["distinct_dms"] - final["refused_second_dms"],
        "refused_second_dm_attempts": final["refused_second_dms"],
        "comments_with_two_public_replies": final["comments_with_two_replies"],
    }
    print(
        f"kill -9 after {result['dms_before_kill']}/{COMMENTS} DMs; restarted server answering after "
        f"{result['restart_to_answering_seconds']} s; first DM {result['restart_to_first_dm_seconds']} s and last DM "
        f"{result['restart_to_last_dm_seconds']} s after the restart (budget: resumes within 5 s)"
    )
    print(
        f"  lost {result['lost']}, doubled DMs {result['doubled_dms']}, doubled public replies "
        f"{result['comments_with_two_public_replies']} "
        f"(re-attempts Meta refused: {result['refused_second_dm_attempts']})"
    )
    (RESULTS / "crash.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["lost"] or result["doubled_dms"] or result["comments_with_two_public_replies"]:
        raise SystemExit("the crash lost or doubled work")


if __name__ == "__main__":
    main()
