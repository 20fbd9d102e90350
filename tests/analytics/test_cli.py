"""``replyflow analytics refresh|rebuild``: the operator's way to bring the rollup up to date or recount it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from replyflow import cli
from replyflow.runtime import Runtime

from .seed import Seeded


def test_refresh_then_rebuild(runtime: Runtime, seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_RUNTIME", runtime)  # the command's runtime: this test's database
    runner = CliRunner()
    refreshed = runner.invoke(cli.main, ["analytics", "refresh"])
    assert refreshed.exit_code == 0, refreshed.output
    assert "Looked at 26 changed runs; 26 counted differently." in refreshed.output
    rebuilt = runner.invoke(cli.main, ["analytics", "rebuild", "--account", seeded.accounts["b"]])
    assert rebuilt.exit_code == 0 and "Counted 4 runs." in rebuilt.output
    assert runner.invoke(cli.main, ["analytics", "--help"]).exit_code == 0
