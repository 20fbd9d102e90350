"""``GET /api/analytics`` on the hand-counted data set (tests/analytics/seed.py): every number is exact."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.testclient import TestClient

from .seed import D1, D2, D3, Seeded

RANGE = {"from": D1.isoformat(), "to": D3.isoformat()}


def _get(client: TestClient, seeded: Seeded, **params: Any) -> dict[str, Any]:
    response = client.get(
        "/api/analytics", params={**RANGE, **params}, headers={"Authorization": f"Bearer {seeded.api_key}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_totals_are_exact(client: TestClient, seeded: Seeded) -> None:
    body = _get(client, seeded)
    assert (body["from"], body["to"], body["timezone"]) == ("2026-03-01", "2026-03-03", "UTC")
    assert body["totals"] == {
        # The account's own comment (a skipped run with reason own_comment) counts nowhere.
        "comments_seen": 18,
        "matched": 12,
        "skipped": 6,
        "skipped_by_reason": {"no_keyword": 4, "post_not_targeted": 2},
        "public_replies": 9,
        "dms_sent": 9,
        "dm_failures": 2,
        "dm_failures_by_reason": {"permission_denied": 1, "user_unavailable": 1},
        "in_progress": 1,
        "replies_received": 3,
        "button_taps": 2,
        "link_clicks": 6,
        "unique_link_clicks": 3,
        "dms_with_links": 5,
        "click_through_rate": 0.6,
        "follow_ups_sent": 2,
        # DMs after 1, 1, 1, 2, 3, 4, 6, 10 and 300 seconds.
        "time_to_dm_p50_seconds": 3.0,
        "time_to_dm_p95_seconds": 300.0,
        "time_to_dm_avg_seconds": 36.444,
    }


def test_per_rule_per_post_and_per_day(client: TestClient, seeded: Seeded) -> None:
    body = _get(client, seeded)
    rules = {row["rule_name"]: row for row in body["by_rule"]}
    assert list(rules) == ["Giveaway", "Price", "Recipe", "(no rule)"]
    giveaway = rules["Giveaway"]
    assert giveaway["rule_id"] == seeded.rules["r1"]
    fields = ("comments_seen", "matched", "dms_sent", "dm_failures")
    assert [giveaway[name] for name in fields] == [6, 6, 4, 2]
    assert (giveaway["replies_received"], giveaway["button_taps"], giveaway["link_clicks"]) == (2, 2, 3)
    assert (giveaway["dms_with_links"], giveaway["unique_link_clicks"]) == (3, 1)
    assert giveaway["click_through_rate"] == round(1 / 3, 4)
    assert (giveaway["time_to_dm_p50_seconds"], giveaway["time_to_dm_p95_seconds"]) == (4.0, 10.0)
    assert rules["Price"]["in_progress"] == 1 and rules["Price"]["dms_sent"] == 2
    assert rules["Recipe"]["public_replies"] == 0 and rules["Recipe"]["dms_sent"] == 3
    no_rule = rules["(no rule)"]
    assert no_rule["rule_id"] is None and no_rule["skipped"] == 6 and no_rule["matched"] == 0

    posts = {(row["account_id"], row["media_id"]): row["comments_seen"] for row in body["by_post"]}
    assert posts == {
        (seeded.accounts["a"], "m1"): 9,
        (seeded.accounts["a"], "m2"): 5,
        (seeded.accounts["b"], "m3"): 4,
    }
    days = [(row["day"], row["comments_seen"], row["dms_sent"], row["skipped"]) for row in body["by_day"]]
    assert days == [("2026-03-01", 9, 4, 3), ("2026-03-02", 8, 5, 2), ("2026-03-03", 1, 0, 1)]


def test_filters_by_account_rule_post_and_range(client: TestClient, seeded: Seeded) -> None:
    bakery = _get(client, seeded, account_id=seeded.accounts["b"])["totals"]
    assert (bakery["comments_seen"], bakery["dms_sent"], bakery["link_clicks"]) == (4, 3, 2)
    assert bakery["skipped_by_reason"] == {"no_keyword": 1}

    price = _get(client, seeded, rule_id=seeded.rules["r2"])
    assert price["totals"]["comments_seen"] == 3
    assert [row["rule_name"] for row in price["by_rule"]] == ["Price"]
    assert (price["totals"]["time_to_dm_p50_seconds"], price["totals"]["time_to_dm_p95_seconds"]) == (3.0, 300.0)

    assert _get(client, seeded, media_id="m1")["totals"]["comments_seen"] == 9

    one_day = _get(client, seeded, **{"from": D2.isoformat(), "to": D2.isoformat()})
    assert one_day["totals"]["comments_seen"] == 8 and len(one_day["by_day"]) == 1

    # The two runs of 27 February are outside the range, and another workspace's runs are never counted.
    everything = _get(client, seeded, **{"from": "2026-02-01", "to": "2026-03-31"})
    assert everything["totals"]["comments_seen"] == 20
    assert len(everything["by_day"]) == 59


def test_csv_export(client: TestClient, seeded: Seeded) -> None:
    headers = {"Authorization": f"Bearer {seeded.api_key}"}
    by_day = client.get("/api/analytics", params={**RANGE, "format": "csv"}, headers=headers)
    assert by_day.status_code == 200
    assert by_day.headers["content-type"].startswith("text/csv")
    assert "attachment" in by_day.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(by_day.text)))
    assert [(r["day"], r["comments_seen"], r["dms_sent"]) for r in rows] == [
        ("2026-03-01", "9", "4"),
        ("2026-03-02", "8", "5"),
        ("2026-03-03", "1", "0"),
    ]
    assert rows[0]["skipped:no_keyword"] == "3" and rows[0]["dm_failures:permission_denied"] == "1"
    assert rows[2]["time_to_dm_p50_seconds"] == ""

    by_rule = client.get("/api/analytics.csv", params={**RANGE, "group_by": "rule"}, headers=headers)
    rules = {r["rule_name"]: r for r in csv.DictReader(io.StringIO(by_rule.text))}
    assert rules["Giveaway"]["click_through_rate"] == "0.3333"
    assert rules["(no rule)"]["rule_id"] == ""
    by_post = client.get("/api/analytics.csv", params={**RANGE, "group_by": "post"}, headers=headers)
    assert {r["media_id"]: r["comments_seen"] for r in csv.DictReader(io.StringIO(by_post.text))} == {
        "m1": "9",
        "m2": "5",
        "m3": "4",
    }


def test_other_workspaces_objects_and_bad_ranges(client: TestClient, seeded: Seeded) -> None:
    headers = {"Authorization": f"Bearer {seeded.api_key}"}
    other = client.get("/api/analytics", params={**RANGE, "account_id": seeded.accounts["c"]}, headers=headers)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    rule = client.get("/api/analytics", params={**RANGE, "rule_id": seeded.rules["r4"]}, headers=headers)
    assert rule.status_code == 404
    backwards = client.get("/api/analytics", params={"from": "2026-03-03", "to": "2026-03-01"}, headers=headers)
    assert backwards.status_code == 422 and backwards.json()["error"]["field"] == "to"
    too_long = client.get("/api/analytics", params={"from": "2024-01-01", "to": "2026-03-01"}, headers=headers)
    assert too_long.status_code == 422
    assert client.get("/api/analytics").status_code == 401

    theirs = client.get("/api/analytics", params=RANGE, headers={"Authorization": f"Bearer {seeded.other_api_key}"})
    assert theirs.json()["totals"]["comments_seen"] == 5
