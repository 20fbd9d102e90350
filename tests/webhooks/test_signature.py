"""X-Hub-Signature-256: only deliveries signed with the app secret (or, during rotation, the previous one) are kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from fastapi.testclient import TestClient

from replyflow.runtime import Runtime
from replyflow.webhooks.signature import sign, verify_signature
from tests.webhooks.conftest import APP_SECRET, OLD_APP_SECRET, comments_delivery, fixture_bytes, signed_headers
from tests.webhooks.helpers import deliveries, delivery_count

URL = "/webhooks/instagram"


def test_valid_signature_is_stored_and_acknowledged(client: TestClient, runtime: Runtime) -> None:
    body = fixture_bytes("comments__top_level.json")
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 200
    assert resp.json()["status"] == "received"
    [stored] = deliveries(runtime)
    assert stored.id == resp.json()["delivery_id"]
    assert stored.body == body, "the raw bytes are kept exactly as signed"
    assert stored.secret_index == 0
    assert stored.status == "pending"
    assert stored.received_at.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - stored.received_at).total_seconds()) < 60


def test_previous_secret_is_accepted_during_rotation(client: TestClient, runtime: Runtime) -> None:
    body = comments_delivery("17866000000000101")
    resp = client.post(URL, content=body, headers=signed_headers(body, OLD_APP_SECRET))
    assert resp.status_code == 200
    assert deliveries(runtime)[0].secret_index == 1


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("sha256=" + "0" * 64, id="wrong"),
        pytest.param("sha1=" + "0" * 40, id="sha1-only"),
        pytest.param("sha256=zz" + "0" * 62, id="not-hex"),
        pytest.param("sha256=abc", id="too-short"),
        pytest.param("sha256:" + "0" * 64, id="bad-separator"),
        pytest.param("0" * 64, id="no-prefix"),
    ],
)
def test_bad_signature_is_401_and_nothing_is_stored(client: TestClient, runtime: Runtime, header: str | None) -> None:
    body = comments_delivery("17866000000000102")
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    resp = client.post(URL, content=body, headers=headers)
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == "invalid_signature"
    assert set(error) >= {"code", "message", "hint"}
    assert APP_SECRET not in resp.text
    assert delivery_count(runtime) == 0


def test_signature_with_another_secret_is_refused(client: TestClient, runtime: Runtime) -> None:
    body = comments_delivery("17866000000000103")
    resp = client.post(URL, content=body, headers=signed_headers(body, "some-other-apps-secret"))
    assert resp.status_code == 401
    assert delivery_count(runtime) == 0


def test_body_altered_by_one_byte_is_refused(client: TestClient, runtime: Runtime) -> None:
    body = fixture_bytes("comments__top_level.json")
    headers = signed_headers(body)
    position = body.index(b"link")
    altered = body[:position] + b"L" + body[position + 1 :]
    assert len(altered) == len(body) and altered != body
    assert client.post(URL, content=altered, headers=headers).status_code == 401
    # Re-serialising the same JSON differently also breaks it: the signature covers bytes, not meaning.
    assert client.post(URL, content=body + b"\n", headers=headers).status_code == 401
    assert delivery_count(runtime) == 0
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert delivery_count(runtime) == 1


def test_uppercase_hex_digest_is_accepted(client: TestClient, runtime: Runtime) -> None:
    body = comments_delivery("17866000000000104")
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest().upper()
    resp = client.post(URL, content=body, headers={"X-Hub-Signature-256": f"sha256={digest}"})
    assert resp.status_code == 200


def test_verify_signature_reports_which_secret_matched() -> None:
    body = b'{"object":"instagram","entry":[]}'
    secrets = [b"current", b"previous"]
    assert verify_signature(body, sign(body, "current"), secrets) == 0
    assert verify_signature(body, sign(body, "previous"), secrets) == 1
    assert verify_signature(body, sign(body, "neither"), secrets) is None
    assert verify_signature(body, None, secrets) is None
    assert verify_signature(body, sign(body, "current"), []) is None
