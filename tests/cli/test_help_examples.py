"""Each command of the tracer and the record teaches by example in its --help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agenttrail.cli.main import app

COMMANDS = [
    ["run"],
    ["sessions"],
    ["session", "show"],
    ["sync"],
    ["link-prs"],
    *[["report", name] for name in ("spend", "adoption", "shipped", "outliers", "models", "packages", "reconcile")],
    ["export"],
    ["sql"],
    ["seed-demo"],
    ["purge"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_gives_an_example(command: list[str]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "Example: agenttrail " in done.output
