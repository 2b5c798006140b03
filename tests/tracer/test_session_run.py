"""`TracedSession.run()` in this process: what a failure to record and a late Ctrl-C do to a session."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agenttrail.store.database import open_engine
from agenttrail.tracer.session import RunOptions, SessionError, TracedSession
from agenttrail.tracer.timeline import session_record


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "dev@example.com"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def _opts(tmp_path: Path, repo: Path, *command: str) -> RunOptions:
    (tmp_path / "home").mkdir(exist_ok=True)
    return RunOptions(
        command=command,
        cwd=str(repo),
        home=tmp_path / "at-home",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home")},
        sandbox=False,
        database_url=f"sqlite:///{tmp_path / 'local.db'}",
        quiet=True,
    )


def test_a_store_that_refuses_the_start_stops_the_run_with_one_line(
    tmp_path: Path, strace: str, git: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session's start cannot be written (a read-only or locked store): the agent must not run, and
    the error says why in one line, not as the database driver's dump of the statement."""
    from sqlalchemy.exc import OperationalError

    from agenttrail.tracer import sinks

    def refuse(self: Any, batch: Any) -> None:
        refusal = Exception("attempt to write a readonly database")
        raise OperationalError("INSERT INTO event … [parameters: …]", {}, refusal)

    monkeypatch.setattr(sinks.StoreSink, "_write", refuse)
    repo = _repo(tmp_path)
    notes: list[str] = []
    session = TracedSession(_opts(tmp_path, repo, "touch", "ran.txt"), log=notes.append)
    with pytest.raises(SessionError) as raised:
        session.run()
    message = str(raised.value)
    assert "attempt to write a readonly database" in message
    assert "\n" not in message and "INSERT" not in message and "parameters" not in message
    assert raised.value.exit_code == 125
    assert not (repo / "ran.txt").exists()  # the agent never ran
    assert not any("ended" in n for n in notes)  # no "session … ended, see it with …" for a session not recorded
    assert capsys.readouterr().err == ""  # nor a retry of the start it will never write


def test_ctrl_c_while_the_session_is_being_finalised_loses_nothing(
    tmp_path: Path, strace: str, git: str, request: pytest.FixtureRequest
) -> None:
    """An impatient second Ctrl-C lands while agenttrail diffs the workspace and writes the end: the
    session's end and its file changes must still be recorded, and the agent's exit code returned."""
    # As in an interactive run; a test run started in the background (CI may be) has SIGINT ignored.
    started_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, started_with))
    repo = _repo(tmp_path)
    opts = _opts(tmp_path, repo, "bash", "-c", "echo made > made.txt; exit 3")
    session = TracedSession(opts)
    session.prepare()
    assert session.snap is not None
    changes = session.snap.changes

    def changes_interrupted() -> Any:
        os.kill(os.getpid(), signal.SIGINT)  # delivered now, in the middle of finalising
        return changes()

    session.snap.changes = changes_interrupted  # type: ignore[method-assign]
    session.prepare = lambda: None  # type: ignore[method-assign]
    summary = session.run()
    assert summary.exit_code == 3
    rec = session_record(open_engine(opts.database_url or ""), summary.session_id)
    assert rec is not None and rec["session"]["exit_code"] == 3
    assert [f["path"] for f in rec["file_changes"]] == ["made.txt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back afterwards


def test_a_file_name_that_is_not_utf8_is_recorded_with_the_rest(tmp_path: Path, strace: str, git: str) -> None:
    """`printf x > $'\\xff\\xfe.bin'`: the snapshot's path held a lone surrogate, ingest refused the last
    batch for it, and the session's end and every file change were lost with it."""
    repo = _repo(tmp_path)
    opts = _opts(tmp_path, repo, "bash", "-c", "printf x > $'\\xff\\xfe.bin'; echo ok > plain.txt")
    summary = TracedSession(opts).run()
    assert summary.report is not None and summary.report.unwritten == 0
    rec = session_record(open_engine(opts.database_url or ""), summary.session_id)
    assert rec is not None and rec["session"]["status"] == "ok"
    assert sorted(f["path"] for f in rec["file_changes"]) == ["\\xff\\xfe.bin", "plain.txt"]
