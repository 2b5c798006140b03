"""The one-line error every command prints: the message is text, never rich markup."""

from __future__ import annotations

import pytest
import typer

from agenttrail.cli import common


def test_fail_prints_brackets_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exc:
        common.fail('no team named "[/]"; set `[retention] content_days`')
    assert exc.value.exit_code == 1
    assert 'no team named "[/]"; set `[retention] content_days`' in capsys.readouterr().err


def test_the_database_refusing_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy.exc import OperationalError

    @common.friendly
    def add_team() -> None:
        raise OperationalError("INSERT INTO team …", {}, Exception("attempt to write a readonly database"))

    with pytest.raises(typer.Exit):
        add_team()
    assert capsys.readouterr().err.strip() == "error: the database refused: attempt to write a readonly database"


def test_a_long_error_stays_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Piped to a log, rich wrapped at 80 columns, splitting paths and URLs across lines.
    message = "cannot write /tmp/" + "deep/" * 30 + "x.csv: No such file or directory"
    with pytest.raises(typer.Exit):
        common.fail(message)
    assert capsys.readouterr().err == f"error: {message}\n"
