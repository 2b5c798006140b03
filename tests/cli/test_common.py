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
