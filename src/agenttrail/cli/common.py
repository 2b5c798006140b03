"""What every command shares: settings, the store, and turning errors into one clear line."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from agenttrail.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = (
    "Database URL (sqlite:///PATH or postgresql://…). Default: $AGENTTRAIL_DATABASE_URL or ~/.agenttrail/agenttrail.db."
)
CONFIG_HELP = "An agenttrail.toml to read settings from."


class UserError(Exception):
    """An error meant for a person: printed as one line, exit code 1."""


def fail(message: str, code: int = 1) -> None:
    # The message often quotes what the user typed or what the store holds: text, never markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly(fn: F) -> F:
    """Known errors become a one-line message; no traceback for a user."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, UserError) as e:
            fail(str(e))
        except Exception as e:
            # Imported here, not at the top: every command's start-up would pay for the store's imports.
            from sqlalchemy.exc import OperationalError

            from agenttrail.store.engine import StoreError
            from agenttrail.store.org import DirectoryError

            if isinstance(e, StoreError | DirectoryError):
                fail(str(e))
            if isinstance(e, OperationalError):  # the database's own refusal: read-only, locked, gone away
                reason = str(e.orig or e).strip().splitlines()[0]
                fail(f"the database refused: {reason}")
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def settings_for(db: str | None = None, config: str | None = None) -> Settings:
    return load_settings(config_file=config, db=db)


def engine_for(db: str | None = None, config: str | None = None) -> Engine:
    from agenttrail.store.database import open_engine

    return open_engine(settings_for(db, config).database_url)


@contextlib.contextmanager
def progress_bar(what: str, total: int | None, unit: str, *, show: bool = True) -> Iterator[Callable[[int], None]]:
    """A bar on stderr for long work, gone when it ends; yields `advance(n)`. On a terminal only: piped
    output and logs stay clean. rich's progress module is imported only when a bar is shown."""
    if not show or not err_console.is_terminal:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn())
    with Progress(SpinnerColumn(), *columns, console=err_console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def working(what: str) -> Iterator[None]:
    """A spinner on stderr while work of unknown length runs (on a terminal only)."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(what):
        yield
