"""Every log line of a run's step carries its run id and comment id, whichever module writes it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from replyflow.logging import configure_logging, get_logger
from replyflow.monitoring.context import log_context, run_log_context


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, stream=stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()


def _read(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_run_context_reaches_every_logger_and_ends_with_the_block(lines: io.StringIO) -> None:
    with run_log_context(run_id="run_01abc", comment_id="17895695668004550", account_id="acc_01xyz"):
        get_logger("replyflow.automation.engine").info("public_reply_sent", reply_id="1789")
        with log_context(follow_up_id="fu_01def", ignored=None):
            get_logger("replyflow.graph").debug("graph_call", endpoint="send_message")
    get_logger("replyflow.app").info("after")

    first, nested, after = _read(lines)
    assert (first["event"], first["run_id"], first["comment_id"], first["account_id"]) == (
        "public_reply_sent",
        "run_01abc",
        "17895695668004550",
        "acc_01xyz",
    )
    assert nested["run_id"] == "run_01abc" and nested["follow_up_id"] == "fu_01def" and "ignored" not in nested
    assert "run_id" not in after and "follow_up_id" not in after
