"""Rule matching with 10 / 1,000 / 10,000 rules on one account: CPU per comment, and how it grows.

Issue 12's budget 8: 10,000 rules under 1 ms per comment, growing sub-linearly. Two figures per rule count, both
CPU time in this process:

* ``matcher``: ``matching.choose_rule`` over the account's rules (each on a post of its own with a keyword of its
  own; the comment matches the last rule, the worst case, since every rule is tried in order);
* ``intake``: the whole decision as intake makes it (``intake.decide_run`` in a transaction: the rules read, one
  context per rule, the ``rule_checked`` step of every rule written), on SQLite.

The growth is reported as the exponent k in time ~ rules^k between the two largest counts (1 = linear).
Knobs: ``BENCH_RULE_COUNTS`` (default ``10,1000,10000``), ``BENCH_MATCH_COMMENTS`` (default 20).
Results: printed and written to ``bench/results/matching.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RULE_COUNTS = [int(n) for n in os.environ.get("BENCH_RULE_COUNTS", "10,1000,10000").split(",")]
COMMENTS = int(os.environ.get("BENCH_MATCH_COMMENTS", "20"))
RESULTS = Path(__file__).resolve().parent / "results"


def measure(rule_count: int) -> dict[str, float]:
    from replyflow.accounts.models import Account
    from replyflow.automation import intake
    from replyflow.automation.matching import CommentContext, choose_rule
    from replyflow.automation.models import Rule, Run
    from replyflow.automation.schemas import RuleSpec
    from replyflow.config import load_settings
    from replyflow.db import Base
    from replyflow.runtime import Runtime
    from replyflow.workspaces import service as workspaces

    tmp = tempfile.mkdtemp(prefix="replyflow-matching-")
    runtime = Runtime(load_settings(database_url=f"sqlite:///{tmp}/m.db", data_dir=f"{tmp}/data"))
    Base.metadata.create_all(runtime.engine)
    specs = [
        RuleSpec.model_validate(
            {
                "name": f"rule {n}",
                "posts": {"mode": "specific", "media_ids": [f"1790{n:012d}"]},
                "keywords": [f"word{n}"],
                "private_reply": {"text": "Here is the link"},
            }
        )
        for n in range(rule_count)
    ]
    with runtime.session() as session:
        workspace, _ = workspaces.create_workspace(session=session, name="bench")
        account = Account(workspace_id=workspace.id, page_id="1", page_name="Bench", instagram_id="178", username="b")
        session.add(account)
        session.flush()
        for n, spec in enumerate(specs):
            rule = Rule(workspace_id=workspace.id, account_id=account.id, priority=n)
            rule.apply_spec(spec)
            session.add(rule)
        account_id = account.id
    last = rule_count - 1
    now = dt.datetime.now(dt.UTC)
    context = CommentContext(text=f"word{last} please", media_id=f"1790{last:012d}", from_id="55", username="fan")
    candidates = [(str(n), spec, context) for n, spec in enumerate(specs)]
    start = time.process_time()
    for _ in range(COMMENTS):
        decision = choose_rule(candidates, now=now, account_ig_id="178")
        assert decision.winner == str(last)
    matcher = (time.process_time() - start) / COMMENTS

    intake_cpu = 0.0
    for i in range(COMMENTS):
        with runtime.session() as session:
            account = session.get(Account, account_id)
            assert account is not None
            run = Run(
                id=f"run_bench_{i}",
                workspace_id=account.workspace_id,
                account_id=account_id,
                source="webhook",
                comment_id=f"c{i}",
                media_id=f"1790{last:012d}",
                text=f"word{last} please",
                from_id=f"55{i}",
                username="fan",
                status="received",
                created_at=now,
                updated_at=now,
            )
            session.add(run)
            session.flush()
            start = time.process_time()
            with session.no_autoflush, intake.repo.steps_in_one_insert(session):
                intake.decide_run(session=session, run=run, account=account, now=now, defer_unknown_media=True)
            session.flush()
            intake_cpu += time.process_time() - start
            assert run.rule_id is not None
    runtime.close()
    return {"matcher_ms": round(1000 * matcher, 3), "intake_ms": round(1000 * intake_cpu / COMMENTS, 3)}


def main() -> None:
    results: dict[str, Any] = {"comments": COMMENTS, "rules": {}}
    print("rule matching, one account, the comment matching the last rule: CPU ms per comment")
    for count in RULE_COUNTS:
        figures = measure(count)
        results["rules"][str(count)] = figures
        matcher, decision = figures["matcher_ms"], figures["intake_ms"]
        print(f"  {count:>6} rules: matcher {matcher:9.3f} ms   intake decision {decision:9.3f} ms")
    if len(RULE_COUNTS) > 1:
        # How time grows between the two largest counts: t ~ n^k, k = 1 is linear, below 1 sub-linear.
        (n_low, n_high) = RULE_COUNTS[-2:]
        for figure in ("matcher_ms", "intake_ms"):
            low, high = results["rules"][str(n_low)][figure], results["rules"][str(n_high)][figure]
            exponent = math.log(max(high, 1e-6) / max(low, 1e-6)) / math.log(n_high / n_low)
            results[f"{figure.removesuffix('_ms')}_growth_exponent"] = round(exponent, 2)
            print(f"  {figure.removesuffix('_ms')}: time grows as rules^{exponent:.2f} from {n_low} to {n_high} rules")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "matching.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
