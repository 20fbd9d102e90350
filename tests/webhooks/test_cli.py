"""``replyflow events``: operators list, inspect, replay and prune what Meta sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from replyflow import cli
from replyflow.runtime import Runtime
from replyflow.webhooks import service
from tests.webhooks.conftest import Consumers, comments_delivery, encode, fixture_bytes, signed_headers
from tests.webhooks.helpers import deliveries, events

URL = "/webhooks/instagram"


@pytest.fixture
def run(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(cli, "_RUNTIME", runtime)  # the CLI's per-invocation runtime, pointed at the test database

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli.main, list(args), catch_exceptions=False)
        return result

    return invoke


def _last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def stored(client: TestClient, runtime: Runtime, connect: Any) -> int:
    connect(runtime)
    body = fixture_bytes("comments__top_level.json")
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    garbage = b"certainly not json \x1b[2J"
    assert client.post(URL, content=garbage, headers=signed_headers(garbage)).status_code == 200
    service.drain(runtime=runtime)
    return deliveries(runtime)[0].id


def test_list_events_and_deliveries(run: Any, stored: int) -> None:
    result = run("events", "list", "--json")
    assert result.exit_code == 0, result.output
    [event] = _last_json(result.output)["items"]
    assert (event["field"], event["status"], event["natural_key"]) == (
        "comments",
        "dispatched",
        "comment:17865799348089039",
    )
    assert _last_json(run("events", "list", "--status", "pending", "--json").output)["items"] == []
    assert _last_json(run("events", "list", "--field", "messages", "--json").output)["items"] == []
    listed = _last_json(run("events", "list", "--deliveries", "--json").output)["items"]
    assert [d["status"] for d in listed] == ["rejected", "processed"]
    assert listed[0]["reason"].startswith("not_json")
    assert (
        _last_json(run("events", "list", "--deliveries", "--status", "rejected", "--json").output)["items"][0]["id"]
        == listed[0]["id"]
    )
    text = run("events", "list").output
    assert "comment:17865799348089039" in text and "dispatched" in text
    assert run("events", "list", "--status", "bogus").exit_code == 2


def test_show_pretty_prints_the_raw_body(run: Any, stored: int, runtime: Runtime) -> None:
    result = run("events", "show", str(stored))
    assert result.exit_code == 0, result.output
    assert '"text": "How much is it? Send me the link please 🙏"' in result.output
    assert "Events:" in result.output and "comment:17865799348089039" in result.output
    shown = _last_json(run("events", "show", str(stored), "--json").output)
    assert shown["body"]["entry"][0]["changes"][0]["value"]["id"] == "17865799348089039"
    assert shown["delivery"]["status"] == "processed" and shown["delivery"]["signed_with"] == "current"
    [event] = events(runtime)
    by_event = _last_json(run("events", "show", event.id, "--json").output)
    assert by_event["event"]["payload"]["comment_id"] == "17865799348089039"
    assert by_event["delivery"]["id"] == stored


def test_show_never_lets_a_body_drive_the_terminal(run: Any, stored: int, runtime: Runtime) -> None:
    rejected = deliveries(runtime)[1]
    output = run("events", "show", str(rejected.id)).output
    assert "\x1b" not in output
    assert "\\x1b[2J" in output
    assert "not_json" in output


def test_show_masks_tokens(run: Any, client: TestClient, runtime: Runtime) -> None:
    body = encode(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {"field": "x", "value": {"note": "EAABwzLixnjYBAO0123456789abcdef", "access_token": "anything"}}
                    ],
                }
            ],
        }
    )
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    output = run("events", "show", str(deliveries(runtime)[0].id)).output
    assert "EAABwzLixnjYBAO0123456789abcdef" not in output and "anything" not in output
    assert "[redacted]" in output


def test_unknown_ids(run: Any, runtime: Runtime) -> None:
    missing = run("events", "show", "999")
    assert missing.exit_code == 1 and "No stored delivery 999" in missing.output
    assert run("events", "show", "evt_nope").exit_code == 1
    assert run("events", "show", "banana").exit_code == 2
    assert run("events", "replay", "999").exit_code == 1


def test_replay_and_force(run: Any, stored: int, consumers: Consumers) -> None:
    assert len(consumers.calls) == 1
    plain = _last_json(run("events", "replay", str(stored), "--json").output)
    assert (plain["new_events"], plain["duplicates"], plain["redispatched"]) == (0, 1, 0)
    assert len(consumers.calls) == 1
    forced = run("events", "replay", str(stored), "--force")
    assert forced.exit_code == 0 and "1 dispatched again" in forced.output
    assert len(consumers.calls) == 2


def test_prune(run: Any, stored: int, runtime: Runtime) -> None:
    kept = _last_json(run("events", "prune", "--json").output)
    assert kept == {"pruned": 0, "older_than_days": runtime.settings.inbox_retention_days}
    pruned = _last_json(run("events", "prune", "--older-than-days", "0", "--json").output)
    assert pruned["pruned"] == 2
    assert "raw body pruned" in run("events", "show", str(stored)).output
    assert len(events(runtime)) == 1


def test_help(run: Any) -> None:
    for args in (
        ["events", "--help"],
        ["events", "list", "--help"],
        ["events", "show", "--help"],
        ["events", "replay", "--help"],
        ["events", "prune", "--help"],
    ):
        assert run(*args).exit_code == 0


def test_replay_of_a_pending_delivery_processes_it(
    run: Any, client: TestClient, runtime: Runtime, connect: Any, consumers: Consumers
) -> None:
    connect(runtime)
    body = comments_delivery("17866000000002001")
    assert client.post(URL, content=body, headers=signed_headers(body)).status_code == 200
    result = _last_json(run("events", "replay", str(deliveries(runtime)[0].id), "--json").output)
    assert (result["status"], result["new_events"]) == ("processed", 1)
    assert len(consumers.calls) == 1
