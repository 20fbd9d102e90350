"""Logs never carry a token: Meta tokens, our API keys, query-string secrets, headers and configured secrets."""

from __future__ import annotations

import io
import json
import logging

from replyflow.logging import configure_logging, get_logger, redact_text, register_secrets

USER_TOKEN = "EAAGm0PX4ZCpsBAOZCzZB5XnK7k1ZBZA4ZCQJiZBrZA2wZDZD1a9wZBZCwXYZ"
PAGE_TOKEN = "EAAJZCqfZB7y0IBO5ZCdy4z7GZCZBhZBwl5M4qI0ZBZBaZA0ZD"
IG_TOKEN = "IGQVJWZA3dUc2JmN2ZA4OVd1a3pJd3YzZA0ZA2ZAFFhbW9fZAGRkT0ZA"
IGAA_TOKEN = "IGAAKd83hsf73hs8dfHSDf8sdf-_3jh4k"
API_KEY = "rf_Zq3x1UlvC2m5rB8tQb2Yp0g5WwZfL3s9oQ9v3F6r4kA"
APP_TOKEN = "1234567890123|Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56"


def _capture(**fields: object) -> str:
    stream = io.StringIO()
    configure_logging(level="INFO", json=True, stream=stream)
    get_logger("test").info("graph_call", **fields)
    return stream.getvalue()


def test_tokens_in_values_are_masked() -> None:
    out = _capture(
        note=f"calling with {USER_TOKEN} and {PAGE_TOKEN}",
        ig=IG_TOKEN,
        igaa=f"token={IGAA_TOKEN}",
        url=f"https://graph.facebook.com/v25.0/me?access_token={USER_TOKEN}&fields=id",
        app_token=APP_TOKEN,
        api_key_in_text=f"key was {API_KEY}",
    )
    for secret in (USER_TOKEN, PAGE_TOKEN, IG_TOKEN, IGAA_TOKEN, API_KEY, APP_TOKEN):
        assert secret not in out
    record = json.loads(out)
    assert "fields=id" in record["url"], "the rest of the line stays readable"
    assert record["event"] == "graph_call"


def test_sensitive_keys_and_headers_are_masked() -> None:
    out = _capture(
        headers={"Authorization": f"Bearer {PAGE_TOKEN}", "X-Hub-Signature-256": "sha256=abc", "Accept": "json"},
        access_token="plain-looking-value-123",
        password="hunter2-hunter2",
        token_status="valid",
    )
    record = json.loads(out)
    assert record["headers"]["Authorization"] == "[redacted]"
    assert record["headers"]["X-Hub-Signature-256"] == "[redacted]"
    assert record["headers"]["Accept"] == "json"
    assert record["access_token"] == "[redacted]"
    assert record["password"] == "[redacted]"
    assert record["token_status"] == "valid", "health fields about tokens are not secrets"


def test_configured_secrets_are_masked_everywhere() -> None:
    secret = "my-app-secret-0123456789abcdef"
    register_secrets([secret])
    assert secret not in redact_text(f"signature key {secret}!")
    out = _capture(detail=f"bad secret {secret}")
    assert secret not in out


def test_stdlib_loggers_pass_through_redaction() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", json=True, stream=stream)
    # A logger of our own: other tests may run uvicorn in-process, which reconfigures uvicorn's loggers.
    third_party = logging.getLogger("thirdparty.http")
    third_party.propagate = True
    third_party.disabled = False
    third_party.warning("GET /x?access_token=%s failed", USER_TOKEN)
    assert USER_TOKEN not in stream.getvalue()
    assert "access_token=[redacted]" in stream.getvalue()


def test_exceptions_are_masked() -> None:
    try:
        raise ValueError(f"bad token {PAGE_TOKEN}")
    except ValueError as exc:
        out = _capture(error=exc)
    assert PAGE_TOKEN not in out
