"""The one `agenttrail` command. Each command group lives in its own module with a `register(app)`.

Importing every command module costs about a second (SQLAlchemy, Alembic, genai-prices), which
`agenttrail run -- claude` would pay before every agent start. So `main()` registers only the module
that owns the command named on the command line, and everything for `--help`, completion or an
unknown word (whose error message then lists every command).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer

HELP = "agenttrail: what did the tokens buy? Gateway, session tracer and organisation record for AI coding agents."

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
    "purge",
)

# The top-level words each module registers; tests/cli/test_main.py holds this equal to what
# `register` really adds, so a new command cannot be left out of the fast path unnoticed.
COMMAND_OWNERS = {
    "serve": "serve",
    "mock-llm": "mock_llm",
    "team": "org",
    "project": "org",
    "engineer": "org",
    "key": "keys",
    "budget": "budgets",
    "alerts": "budgets",
    "run": "run",
    "login": "login",
    "logout": "login",
    "sessions": "sessions",
    "session": "sessions",
    "report": "report",
    "sql": "sql",
    "export": "export",
    "import": "import_",
    "link-prs": "link_prs",
    "sync": "sync",
    "seed-demo": "seed_demo",
    "token": "tokens",
    "purge": "purge",
}


def build_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """The CLI with the commands of `modules` registered."""
    app = typer.Typer(
        name="agenttrail",
        help=HELP,
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
    )
    # A Typer app with one command and no callback runs that command for any words; with a callback
    # it stays a group, so `agenttrail run …` means the same with one module registered as with all.
    app.callback()(_no_options)
    for name in modules:
        try:
            mod = importlib.import_module(f"agenttrail.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"agenttrail.cli.{name}":
                raise
            continue
        mod.register(app)
    return app


def _no_options() -> None:
    return None


def modules_for(argv: Sequence[str]) -> Sequence[str]:
    """The command modules needed to run `argv` (the arguments after the program name)."""
    owner = COMMAND_OWNERS.get(argv[0]) if argv else None
    return (owner,) if owner else COMMAND_MODULES


def main() -> None:
    build_app(modules_for(sys.argv[1:]))()


def __getattr__(name: str) -> Any:
    # `from agenttrail.cli.main import app` (tests, embedding) gets the whole CLI, built on first use.
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)
