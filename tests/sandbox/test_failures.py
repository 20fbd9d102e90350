"""Failures injected on purpose: transient errors, throttling, named Meta errors, and timeouts around a send."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from replyflow.sandbox import SandboxState
from replyflow.sandbox.models import Comment, DemoWorld
from tests.sandbox.conftest import Graph

pytestmark = pytest.mark.anyio


@pytest.fixture
def comment(state: SandboxState, demo: DemoWorld) -> Comment:
    return state.add_comment(demo.media_ids[0], text="ROAST", username="coffee.lena")


def private_reply(comment_id: str) -> dict[str, Any]:
    return {"recipient": {"comment_id": comment_id}, "message": {"text": "Here you go"}}


async def test_transient_failure_then_success(graph: Graph, state: SandboxState, demo: DemoWorld) -> None:
    state.inject_failure("GET /me/accounts", kind="transient", times=2)
    for _ in range(2):
        response = await graph.get("me/accounts", token=demo.user_token)
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == 2 and error["is_transient"] is True
    assert (await graph.get("me/accounts", token=demo.user_token)).status_code == 200


async def test_patterns_match_templates_and_concrete_paths(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.inject_failure("*/replies", kind="error", code=1, times=None)
    state.inject_failure(f"GET /{demo.ig_account_id}", kind="error", code=100, subcode=33)
    for _ in range(3):
        response = await graph.post(f"{comment.id}/replies", token=page_token, data={"message": "hi"})
        assert response.json()["error"]["code"] == 1
    assert (await graph.get(demo.ig_account_id, token=page_token)).json()["error"]["error_subcode"] == 33
    assert (await graph.get(demo.ig_account_id, token=page_token)).status_code == 200
    state.clear_failures()
    assert (await graph.post(f"{comment.id}/replies", token=page_token, data={"message": "hi"})).status_code == 200


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80002])
async def test_rate_limit_carries_regain_time(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, code: int
) -> None:
    state.inject_failure("GET /{ig-id}/media", kind="rate_limit", code=code, regain_minutes=7)
    response = await graph.get(f"{demo.ig_account_id}/media", token=page_token)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    usage = json.loads(response.headers["x-business-use-case-usage"])[demo.ig_account_id][0]
    assert usage["estimated_time_to_regain_access"] == 7 and usage["call_count"] >= 100


async def test_named_error_with_subcode(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.inject_failure("POST /{page-id}/messages", kind="error", code=551, subcode=1545041,
                         message="This person isn't available right now.")  # fmt: skip
    error = (await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))).json()
    assert (error["error"]["code"], error["error"]["error_subcode"]) == (551, 1545041)
    assert state.outbox() == []


async def test_timeout_after_send_delivers_then_times_out(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.inject_failure("POST /{page-id}/messages", kind="timeout_after_send")
    with pytest.raises(httpx.ReadTimeout):
        await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    (entry,) = state.outbox(kind="private_reply")
    assert entry.comment_id == comment.id
    # Recovery per CONTRACT.md: a second attempt reads "invalid for a private reply" as "already sent".
    retry = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert retry.json()["error"]["error_subcode"] == 2534025


async def test_timeout_before_send_does_nothing(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.inject_failure("POST /{page-id}/messages", kind="timeout")
    with pytest.raises(httpx.ReadTimeout):
        await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert state.outbox() == []
    assert (await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))).is_success


async def test_hanging_timeout_answers_late(
    graph: Graph, state: SandboxState, demo: DemoWorld, page_token: str, comment: Comment
) -> None:
    state.inject_failure("POST /{page-id}/messages", kind="timeout_after_send", hang_seconds=0.05)
    late = await graph.post(f"{demo.page_id}/messages", token=page_token, json=private_reply(comment.id))
    assert late.status_code == 200 and len(state.outbox()) == 1


async def test_failures_are_injected_over_http_too(http: httpx.AsyncClient, graph: Graph, demo: DemoWorld) -> None:
    created = await http.post("/control/failures", json={"pattern": "GET /me", "kind": "error", "code": 368})
    assert created.status_code == 201
    assert (await graph.get("me", token=demo.user_token)).json()["error"]["code"] == 368
    invalid = await http.post("/control/failures", json={"pattern": "GET /me", "kind": "explode"})
    assert invalid.status_code == 422
    await http.post("/control/failures", json={"pattern": "GET /me", "kind": "transient", "times": 5})
    assert (await http.delete("/control/failures")).json() == {"success": True}
    assert (await graph.get("me", token=demo.user_token)).status_code == 200


def test_invalid_injections_are_refused(state: SandboxState) -> None:
    with pytest.raises(ValueError, match="needs a code"):
        state.inject_failure("*", kind="error")
    with pytest.raises(ValueError, match="unknown failure kind"):
        state.inject_failure("*", kind="boom")  # type: ignore[arg-type]
