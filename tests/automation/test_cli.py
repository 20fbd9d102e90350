"""``replyflow runs list|show`` and ``replyflow automation sweep`` on a database with handled comments."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from alembic import command
from click.testing import CliRunner

import replyflow.cli as cli
from replyflow.db import alembic_config

from .world import World


@pytest.fixture
def run_cli(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    settings = world.runtime.settings
    command.stamp(alembic_config(settings.database_url), "head")  # the schema came from the models
    monkeypatch.setenv("REPLYFLOW_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REPLYFLOW_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr(cli, "_RUNTIME", world.runtime)
    yield CliRunner()


def test_runs_list_and_show(world: World, run_cli: CliRunner) -> None:
    world.add_rule()
    comment_id = world.comment("link")
    world.drive()
    run_id = world.run_for(comment_id).id

    listed = run_cli.invoke(cli.main, ["runs", "list", "--status", "done", "--json"])
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.output.strip().splitlines()[-1])["items"]
    assert [(i["id"], i["comment_id"]) for i in items] == [(run_id, comment_id)]

    shown = run_cli.invoke(cli.main, ["runs", "show", run_id])
    assert shown.exit_code == 0, shown.output
    assert "dm_sent" in shown.output and comment_id in shown.output

    missing = run_cli.invoke(cli.main, ["runs", "show", "run_nope"])
    assert missing.exit_code == 1


def test_automation_sweep(world: World, run_cli: CliRunner) -> None:
    result = run_cli.invoke(cli.main, ["automation", "sweep"])
    assert result.exit_code == 0, result.output
    assert "handed to the workers" in result.output
