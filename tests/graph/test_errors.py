"""Meta's error answers become the right typed exception, with a stable code, a hint and no token in sight."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from replyflow.errors import UpstreamError
from replyflow.graph.errors import (
    DEFAULT_RATE_LIMIT_SECONDS,
    ERROR_TABLE,
    POLICY_BLOCK_SECONDS,
    CommentFinal,
    CommentFinalReason,
    GraphError,
    InvalidRequest,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    TokenInvalid,
    TokenInvalidReason,
    TransientError,
    classify,
    sanitize,
)
from tests.graph.fixtures import GraphFixture, fixture_names, load_fixture

# fixture -> (class for a read or idempotent call, class for a send, stable code for the read case)
EXPECTED: dict[str, tuple[type[GraphError], type[GraphError], str]] = {
    "error__token_expired_463": (TokenInvalid, TokenInvalid, "meta_token_invalid"),
    "error__token_password_changed_460": (TokenInvalid, TokenInvalid, "meta_token_invalid"),
    "error__token_app_not_installed_458": (TokenInvalid, TokenInvalid, "meta_token_invalid"),
    "error__token_invalid_190": (TokenInvalid, TokenInvalid, "meta_token_invalid"),
    "error__token_malformed_190": (TokenInvalid, TokenInvalid, "meta_token_invalid"),
    "error__private_reply_used_2534025": (CommentFinal, CommentFinal, "meta_comment_rejected"),
    "error__outside_window_2534022": (CommentFinal, CommentFinal, "meta_comment_rejected"),
    "error__outside_window_2018278": (CommentFinal, CommentFinal, "meta_comment_rejected"),
    "error__user_unavailable_551": (CommentFinal, CommentFinal, "meta_comment_rejected"),
    "error__invalid_comment_2018292": (CommentFinal, CommentFinal, "meta_comment_rejected"),
    "error__user_not_found_2534014": (CommentFinal, CommentFinal, "meta_comment_rejected"),
    "error__rate_limit_613": (RateLimited, RateLimited, "meta_rate_limited"),
    "error__rate_limit_app_4": (RateLimited, RateLimited, "meta_rate_limited"),
    "error__rate_limit_user_17": (RateLimited, RateLimited, "meta_rate_limited"),
    "error__rate_limit_page_32": (RateLimited, RateLimited, "meta_rate_limited"),
    "error__rate_limit_ig_80002": (RateLimited, RateLimited, "meta_rate_limited"),
    "error__policy_block_368": (RateLimited, RateLimited, "meta_rate_limited"),
    "error__capability_3": (PermissionDenied, PermissionDenied, "meta_permission_denied"),
    "error__permission_10": (PermissionDenied, PermissionDenied, "meta_permission_denied"),
    "error__permission_200": (PermissionDenied, PermissionDenied, "meta_permission_denied"),
    # A send that failed "temporarily" may have been delivered anyway.
    "error__temporarily_unavailable_2": (TransientError, OutcomeUnknown, "meta_unavailable"),
    "error__unknown_1": (TransientError, OutcomeUnknown, "meta_unavailable"),
    "error__server_500_empty": (TransientError, OutcomeUnknown, "meta_unavailable"),
    "error__bad_gateway_html": (TransientError, OutcomeUnknown, "meta_unavailable"),
    "error__object_missing_100_33": (InvalidRequest, InvalidRequest, "meta_invalid_request"),
    "error__code_used_100_36009": (InvalidRequest, InvalidRequest, "meta_invalid_request"),
}

COMMENT_REASONS = {
    "error__private_reply_used_2534025": CommentFinalReason.PRIVATE_REPLY_ALREADY_SENT_OR_INVALID,
    "error__outside_window_2534022": CommentFinalReason.OUTSIDE_WINDOW,
    "error__outside_window_2018278": CommentFinalReason.OUTSIDE_WINDOW,
    "error__user_unavailable_551": CommentFinalReason.USER_UNAVAILABLE,
    "error__invalid_comment_2018292": CommentFinalReason.INVALID_COMMENT,
    "error__user_not_found_2534014": CommentFinalReason.USER_NOT_FOUND,
}

TOKEN_REASONS = {
    "error__token_expired_463": TokenInvalidReason.EXPIRED,
    "error__token_password_changed_460": TokenInvalidReason.PASSWORD_CHANGED,
    "error__token_app_not_installed_458": TokenInvalidReason.APP_NOT_INSTALLED,
    "error__token_invalid_190": TokenInvalidReason.INVALID,
    "error__token_malformed_190": TokenInvalidReason.INVALID,
}


def _classify(fx: GraphFixture, *, sends: bool = False, secrets: tuple[str, ...] = ()) -> GraphError:
    body: Any = fx.body if fx.is_json else None
    return classify(http_status=fx.status, body=body, headers=fx.headers, sends=sends, secrets=secrets)


def test_every_error_fixture_has_an_expectation() -> None:
    assert set(fixture_names("error__")) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_fixture_maps_to_its_class(name: str) -> None:
    fx = load_fixture(name)
    read_class, send_class, code = EXPECTED[name]

    error = _classify(fx)
    assert type(error) is read_class
    assert isinstance(error, UpstreamError)
    assert error.error_code == code
    assert error.hint and error.message
    assert error.meta_http_status == fx.status
    if fx.error is not None:
        assert error.meta_code == fx.error["code"]
        assert error.subcode == fx.error.get("error_subcode")
        assert error.fbtrace_id == fx.error["fbtrace_id"]

    assert type(_classify(fx, sends=True)) is send_class


@pytest.mark.parametrize("name", sorted(COMMENT_REASONS))
def test_comment_final_reason(name: str) -> None:
    error = _classify(load_fixture(name), sends=True)
    assert isinstance(error, CommentFinal)
    assert error.reason is COMMENT_REASONS[name]
    assert not error.is_transient


@pytest.mark.parametrize("name", sorted(TOKEN_REASONS))
def test_token_invalid_reason(name: str) -> None:
    fx = load_fixture(name)
    error = _classify(fx)
    assert isinstance(error, TokenInvalid)
    assert error.reason is TOKEN_REASONS[name]
    assert error.subcode == (fx.error or {}).get("error_subcode")
    assert "reconnect" in error.hint.lower()


def test_rate_limit_waits_for_metas_estimate_in_minutes() -> None:
    # 613 fixture: estimated_time_to_regain_access = 12 (minutes)
    error = _classify(load_fixture("error__rate_limit_613"), sends=True)
    assert isinstance(error, RateLimited)
    assert error.retry_after_seconds == 12 * 60
    assert error.is_transient
    assert error.usage.max_percent == 100
    assert "12 min" in error.hint

    ig = _classify(load_fixture("error__rate_limit_ig_80002"))
    assert isinstance(ig, RateLimited) and ig.retry_after_seconds == 7 * 60


def test_rate_limit_without_estimate_uses_default_or_retry_after() -> None:
    app = _classify(load_fixture("error__rate_limit_app_4"))
    assert isinstance(app, RateLimited)
    assert app.retry_after_seconds == DEFAULT_RATE_LIMIT_SECONDS
    assert app.usage.app is not None and app.usage.app.call_count == 104

    fx = load_fixture("error__rate_limit_user_17")
    with_header = classify(http_status=400, body=fx.body, headers={"Retry-After": "42"})
    assert isinstance(with_header, RateLimited) and with_header.retry_after_seconds == 42

    blocked = _classify(load_fixture("error__policy_block_368"))
    assert isinstance(blocked, RateLimited) and blocked.retry_after_seconds == POLICY_BLOCK_SECONDS


def test_bare_429_is_a_rate_limit() -> None:
    error = classify(http_status=429, body=None, headers={})
    assert isinstance(error, RateLimited)
    assert error.retry_after_seconds == DEFAULT_RATE_LIMIT_SECONDS


@pytest.mark.parametrize(
    ("code", "subcode", "expected"),
    [
        *[(c, None, RateLimited) for c in (4, 17, 32, 341, 613, *range(80001, 80015))],
        *[(c, None, PermissionDenied) for c in (3, 10, 200, 250, 299)],
        *[(190, s, TokenInvalid) for s in (None, 458, 459, 460, 463, 464, 467, 999)],
        (102, None, TokenInvalid),
        (1, None, TransientError),
        (2, None, TransientError),
        (100, None, InvalidRequest),
        (100, 2534025, CommentFinal),
        (10, 2534022, CommentFinal),
        (10, 2018278, CommentFinal),
        (551, 1545041, CommentFinal),
        (100, 2018292, CommentFinal),
        (100, 2534014, CommentFinal),
        (80015, None, GraphError),
        (12345, None, GraphError),
    ],
)
def test_error_table(code: int, subcode: int | None, expected: type[GraphError]) -> None:
    body = {"error": {"message": "x", "type": "OAuthException", "code": code, "error_subcode": subcode}}
    assert type(classify(http_status=400, body=body)) is expected


def test_table_lists_comment_pairs_before_generic_codes() -> None:
    first_generic = next(i for i, rule in enumerate(ERROR_TABLE) if rule.subcodes is None)
    assert all(rule.subcodes is None for rule in ERROR_TABLE[first_generic:])


@pytest.mark.parametrize("subcode", [458, 459, 460, 463, 464, 467])
def test_token_reasons_are_plain_words(subcode: int) -> None:
    error = classify(http_status=400, body={"error": {"code": 190, "error_subcode": subcode}})
    assert isinstance(error, TokenInvalid)
    assert error.reason.value.replace("_", "").isalpha()
    assert error.message != TokenInvalid.default_message or error.reason is TokenInvalidReason.INVALID


def test_unknown_code_with_transient_flag_is_transient() -> None:
    error = classify(http_status=400, body={"error": {"code": 9999, "is_transient": True}})
    assert isinstance(error, TransientError)


def test_garbage_bodies_never_break_classification() -> None:
    bodies: list[Any] = [None, "", [], {"error": "nope"}, {"error": {"code": "abc", "error_subcode": True}}, 42]
    for body in bodies:
        error = classify(http_status=400, body=body, headers={"x-app-usage": "{"})
        assert type(error) is GraphError
        assert error.meta_code is None


def test_codes_given_as_strings_still_match() -> None:
    error = classify(http_status=400, body={"error": {"code": "190", "error_subcode": "463"}})
    assert isinstance(error, TokenInvalid) and error.reason is TokenInvalidReason.EXPIRED


def test_meta_text_never_carries_a_token() -> None:
    fx = load_fixture("error__token_malformed_190")
    echoed = "EAABsbCS1iHgBOthisTokenIsEchoedBackByMeta0000000000000000000"
    assert echoed in fx.error["message"]  # type: ignore[index]
    error = _classify(fx)
    for text in (error.message, error.hint, str(error), repr(error), str(error.to_dict())):
        assert echoed not in text
        assert "EAAB" not in text
    assert "Malformed access token" in error.message


@pytest.mark.parametrize(
    "text",
    [
        "bad url https://graph.facebook.com/me?access_token=EAAB0123456789abcdef&x=1",
        "token EAABsbCS1iHgBOabcdefghijklmnop rejected",
        "ig token IGAAkfjdhgkjfdhgkjdfhgkdfjhg is expired",
        "header Authorization: Bearer abcdefghijklmnop1234",
        "header Authorization: OAuth abcdefghijklmnop1234",
        "app token 100000000000001|f3c1a5e7d9b2c4e6a8b0d2f4e6a8c0e2 invalid",
        "client_secret=topsecretvalue123&code=AQBx123",
    ],
)
def test_sanitize_strips_credentials(text: str) -> None:
    cleaned = sanitize(text)
    assert cleaned is not None
    for secret in (
        "EAAB0123456789abcdef",
        "EAABsbCS1iHgBOabcdefghijklmnop",
        "IGAAkfjdhgkjfdhgkjdfhgkdfjhg",
        "abcdefghijklmnop1234",
        "f3c1a5e7d9b2c4e6a8b0d2f4e6a8c0e2",
        "topsecretvalue123",
        "AQBx123",
    ):
        assert secret not in cleaned


def test_sanitize_strips_known_secrets_of_any_shape() -> None:
    cleaned = sanitize("odd token xyz-opaque-sandbox-token in text", secrets=["xyz-opaque-sandbox-token"])
    assert cleaned is not None and "xyz-opaque-sandbox-token" not in cleaned


def test_sanitize_bounds_length_and_control_characters() -> None:
    cleaned = sanitize("a\x00b\x1bc" + "x" * 5000)
    assert cleaned is not None
    assert "\x00" not in cleaned and "\x1b" not in cleaned
    assert len(cleaned) <= 400


def test_error_renders_with_meta_details_for_support() -> None:
    error = _classify(load_fixture("error__private_reply_used_2534025"), sends=True)
    body = error.to_dict()["error"]
    assert body["code"] == "meta_comment_rejected"
    assert body["meta"]["code"] == 100 and body["meta"]["subcode"] == 2534025
    assert "fbtrace_id" in body["meta"]
    assert error.http_status == CommentFinal.status  # our status, not Meta's 400


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_errors_survive_pickling(name: str) -> None:
    original = _classify(load_fixture(name), sends=True)
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301  (our own bytes)
    assert type(copy) is type(original)
    assert copy.to_dict() == original.to_dict()
    for attribute in ("meta_code", "subcode", "is_transient", "fbtrace_id", "retry_after_seconds", "usage"):
        assert getattr(copy, attribute) == getattr(original, attribute)
    assert getattr(copy, "reason", None) == getattr(original, "reason", None)


def test_is_transient_follows_the_class_where_it_is_decided() -> None:
    # Meta flags its 613 as transient; a final comment error is never worth retrying, whatever the flag says.
    flagged = {"error": {"code": 100, "error_subcode": 2534025, "is_transient": True}}
    assert classify(http_status=400, body=flagged).is_transient is False
    assert classify(http_status=400, body={"error": {"code": 4}}).is_transient is True
    assert classify(http_status=400, body={"error": {"code": 9999, "is_transient": False}}).is_transient is False
    unknown = classify(http_status=500, body={"error": {"code": 2, "is_transient": True}}, sends=True)
    assert isinstance(unknown, OutcomeUnknown) and unknown.is_transient is False
