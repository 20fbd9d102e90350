"""Usage headers: real shapes are read exactly, garbage is ignored and never raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replyflow.graph.usage import Usage, parse_usage
from tests.graph.fixtures import load_fixture


def test_app_usage() -> None:
    usage = parse_usage({"X-App-Usage": '{"call_count":28,"total_time":25,"total_cputime":7}'})
    assert usage.app is not None
    assert (usage.app.call_count, usage.app.total_time, usage.app.total_cputime) == (28, 25, 7)
    assert usage.max_percent == 28
    assert usage.regain_seconds is None
    assert not usage.is_empty


def test_business_use_case_usage_with_several_objects() -> None:
    header = json.dumps(
        {
            "17841400000000001": [
                {
                    "type": "instagram",
                    "call_count": 40,
                    "total_cputime": 5,
                    "total_time": 9,
                    "estimated_time_to_regain_access": 0,
                },
            ],
            "102938475610293": [
                {
                    "type": "pages",
                    "call_count": 100,
                    "total_cputime": 20,
                    "total_time": 30,
                    "estimated_time_to_regain_access": 3,
                },
                {
                    "type": "messenger",
                    "call_count": 12,
                    "total_cputime": 1,
                    "total_time": 2,
                    "estimated_time_to_regain_access": 0,
                    "ads_api_access_tier": "standard_access",
                },
            ],
        }
    )
    usage = parse_usage({"x-business-use-case-usage": header})
    assert len(usage.business) == 3
    assert usage.max_percent == 100
    assert usage.regain_seconds == 180  # minutes -> seconds
    pages = usage.for_business("102938475610293")
    assert [e.type for e in pages] == ["pages", "messenger"]
    assert pages[0].regain_seconds == 180 and pages[1].regain_seconds is None
    assert usage.for_business("17841400000000001")[0].max_percent == 40


def test_page_and_ad_account_usage() -> None:
    usage = parse_usage(
        {
            "X-Page-Usage": '{"call_count":91,"total_cputime":3,"total_time":4,"estimated_time_to_regain_access":2}',
            "X-Ad-Account-Usage": (
                '{"acc_id_util_pct":9.67,"reset_time_duration":30,"ads_api_access_tier":"standard_access"}'
            ),
        }
    )
    assert usage.page is not None and usage.page.call_count == 91 and usage.page.regain_seconds == 120
    assert usage.ad_account is not None
    assert usage.ad_account.util_percent == pytest.approx(9.67)
    assert usage.ad_account.reset_seconds == 30
    assert usage.ad_account.access_tier == "standard_access"
    assert usage.max_percent == 91
    assert usage.regain_seconds == 120


def test_fixture_headers_are_read() -> None:
    usage = parse_usage(load_fixture("error__rate_limit_613").headers)
    assert usage.business[0].business_id == "102938475610293"
    assert usage.business[0].type == "messenger"
    assert usage.regain_seconds == 12 * 60


def test_no_headers_is_empty_usage() -> None:
    usage = parse_usage({"content-type": "application/json"})
    assert usage == Usage()
    assert usage.is_empty and usage.max_percent == 0 and usage.regain_seconds is None


def test_numbers_as_strings_are_accepted() -> None:
    usage = parse_usage({"x-app-usage": '{"call_count":"55","total_cputime":"1.5","total_time":null}'})
    assert usage.app is not None and usage.app.call_count == 55 and usage.app.total_cputime == 1.5


@pytest.mark.parametrize(
    "headers",
    [
        {"x-app-usage": "not json"},
        {"x-app-usage": "[1,2,3]"},
        {"x-app-usage": '{"call_count": "lots"}'},
        {"x-app-usage": '{"call_count": -5, "total_time": NaN, "total_cputime": Infinity}'},
        {"x-app-usage": '{"call_count": true}'},
        {"x-business-use-case-usage": '{"123": "nope"}'},
        {"x-business-use-case-usage": '{"123": [1, null, "x"]}'},
        {"x-business-use-case-usage": '{"123": [{"type": 5, "estimated_time_to_regain_access": "soon"}]}'},
        {"x-business-use-case-usage": "null"},
        {"x-business-use-case-usage": "[" * 100_000},
        {"x-ad-account-usage": '{"acc_id_util_pct": {}}'},
        {"x-page-usage": ""},
        {"x-app-usage": "x" * 1_000_000},
    ],
)
def test_garbage_headers_are_ignored(headers: dict[str, str]) -> None:
    usage = parse_usage(headers)
    assert usage.max_percent == 0
    assert usage.regain_seconds is None


def test_absurd_regain_estimate_is_capped() -> None:
    usage = parse_usage(
        {
            "x-business-use-case-usage": (
                '{"1":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":1e12}]}'
            )
        }
    )
    assert usage.regain_seconds == 7 * 24 * 3600


def test_a_bare_entry_instead_of_a_list_is_tolerated() -> None:
    usage = parse_usage({"x-business-use-case-usage": '{"1":{"type":"pages","call_count":70}}'})
    assert usage.business[0].call_count == 70


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.dictionaries(
        st.sampled_from(["x-app-usage", "X-Business-Use-Case-Usage", "x-page-usage", "x-ad-account-usage", "other"]),
        st.one_of(
            st.text(max_size=200),
            st.recursive(
                st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                max_leaves=20,
            ).map(json.dumps),
        ),
    )
)
def test_parse_usage_never_raises(headers: dict[str, str]) -> None:
    usage = parse_usage(headers)
    assert usage.max_percent >= 0
    assert usage.regain_seconds is None or usage.regain_seconds > 0
