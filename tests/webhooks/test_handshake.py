"""Meta's subscription handshake: the challenge comes back only for our verify token, and only when it is safe."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.webhooks.conftest import VERIFY_TOKEN

URL = "/webhooks/instagram"


def _params(**overrides: str) -> dict[str, str]:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v != "<absent>"}


def test_right_token_echoes_the_challenge_as_plain_text(client: TestClient) -> None:
    resp = client.get(URL, params=_params())
    assert resp.status_code == 200
    assert resp.text == "1158201444"
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_wrong_token_is_forbidden_and_echoes_nothing(client: TestClient) -> None:
    resp = client.get(URL, params=_params(**{"hub.verify_token": "guess"}))
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "verify_token_mismatch"
    assert "1158201444" not in resp.text
    assert VERIFY_TOKEN not in resp.text


def test_token_that_only_shares_a_prefix_is_forbidden(client: TestClient) -> None:
    assert client.get(URL, params=_params(**{"hub.verify_token": VERIFY_TOKEN[:-1]})).status_code == 403
    assert client.get(URL, params=_params(**{"hub.verify_token": VERIFY_TOKEN + "x"})).status_code == 403


def test_missing_parameters(client: TestClient) -> None:
    assert client.get(URL).status_code == 403
    assert client.get(URL, params=_params(**{"hub.verify_token": "<absent>"})).status_code == 403
    assert client.get(URL, params=_params(**{"hub.mode": "<absent>"})).status_code == 403
    assert client.get(URL, params=_params(**{"hub.mode": "unsubscribe"})).status_code == 403
    missing_challenge = client.get(URL, params=_params(**{"hub.challenge": "<absent>"}))
    assert missing_challenge.status_code == 400
    assert missing_challenge.json()["error"]["code"] == "invalid_challenge"


def test_unsafe_challenge_is_not_reflected(client: TestClient) -> None:
    for challenge in ("<script>alert(1)</script>", "a b", "x" * 129, ""):
        resp = client.get(URL, params=_params(**{"hub.challenge": challenge}))
        assert resp.status_code == 400, challenge
        assert "<script>" not in resp.text
