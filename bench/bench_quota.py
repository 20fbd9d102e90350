"""Draining a burst at Meta's private-reply quota, with no refusal.

`REPLYFLOW_PRIVATE_REPLY_QUOTA=30/2` on replyflow, and the Graph stand-in enforcing the same 30 per 2 s sliding
window the way Meta enforces 750/hour (a 613 for each DM beyond it). A burst of 150 matching comments must drain in
at most 1.1× the quota's minimum — the first 30 at once, then 30 more each 2 s: (150 / 30 − 1) × 2 s = 8 s, measured
from the first DM — with **zero** 613s, including at window edges. Results go to ``bench/results/quota.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
import time

from bench.bench_pipeline import IG_ID, MEDIA_ID, PAGE_ID, RESULTS, SENDERS, Deployment, comment_delivery, send_burst

COMMENTS = int(os.environ.get("BENCH_QUOTA_COMMENTS", "150"))
COUNT, SECONDS = 30, 2


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    quota = f"{COUNT}/{SECONDS}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        Deployment(
            tmp,
            accounts=[(IG_ID, PAGE_ID, MEDIA_ID)],
            extra_env={"REPLYFLOW_PRIVATE_REPLY_QUOTA": quota},
            meta_quota=quota,
        ) as dep,
    ):
        bodies = [comment_delivery(f"1795{i:012d}", 800_000 + i) for i in range(COMMENTS)]
        asyncio.run(send_burst(dep.webhook_url, bodies, SENDERS))
        minimum = (math.ceil(COMMENTS / COUNT) - 1) * SECONDS
        deadline = time.monotonic() + 10 * minimum + 30
        stats = dep.stats()
        while stats["distinct_dms"] < COMMENTS and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = dep.stats()
    took = (stats["last_dm_at"] or time.time()) - (stats["first_dm_at"] or time.time())
    result = {
        "quota": quota,
        "comments": COMMENTS,
        "dms": stats["distinct_dms"],
        "minimum_seconds": minimum,
        "seconds_first_to_last_dm": round(took, 2),
        "ratio_to_minimum": round(took / minimum, 3),
        "rate_limit_refusals": stats["rate_limited"],
    }
    print(
        f"quota {quota}: {result['dms']}/{COMMENTS} DMs in {result['seconds_first_to_last_dm']} s from the first, "
        f"{result['ratio_to_minimum']}x the minimum of {minimum} s (budget <= 1.1x); "
        f"613 refusals: {result['rate_limit_refusals']} (budget 0)"
    )
    (RESULTS / "quota.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["dms"] < COMMENTS:
        raise SystemExit("the burst did not drain")


if __name__ == "__main__":
    main()
