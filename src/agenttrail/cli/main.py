"""The one `agenttrail` command. Each command group lives in its own module with a `register(app)`."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="agenttrail",
    help="agenttrail: what did the tokens buy? Gateway, session tracer and organisation record for AI coding agents.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

# Order is the order of `agenttrail --help`. A module missing here is a command not yet built.
COMMAND_MODULES = (
    "serve",
    "mock_llm",
    "org",
    "keys",
    "budgets",
    "run",
    "login",
    "sessions",
    "report",
    "sql",
    "export",
    "import_",
    "link_prs",
    "sync",
    "seed_demo",
    "tokens",
)

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"agenttrail.cli.{_name}")
    except ModuleNotFoundError as e:
        if e.name != f"agenttrail.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()
