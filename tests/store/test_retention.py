"""Purging content keeps every figure: the reports, the sessions view and llm_calls read the same after."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text
from tests.reports.handbuilt import SESSIONS, W20, build_org, by_sid

from agenttrail.config import ConfigError, load_settings
from agenttrail.events import Event, stable_id
from agenttrail.reports.base import Filters
from agenttrail.reports.registry import REPORTS, run_report
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.retention import purge_content, purged_payload, retention_settings

SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # the shape only; redaction replaces it anyway
OLD, NEW = "p1", "p2"  # p1 starts in week 19, p2 in week 20; the cutoff is week 20's Monday


def _dialogue(sid: str, start: Any) -> list[Event]:
    words = f"please fix the flaky test in {sid}"
    rows = [
        ("prompt", {"text": words, "agent": "claude-code"}),
        ("tool_call", {"tool": "Bash", "tool_use_id": f"tu-{sid}", "input": {"command": "pytest -k flaky"}}),
        ("tool_result", {"tool_use_id": f"tu-{sid}", "output": f"1 failed in {sid}", "is_error": False}),
        ("response", {"text": f"fixed {sid} by pinning the seed", "model": "claude-sonnet-4-5"}),
        ("exec", {"argv": ["/usr/bin/curl", "-H", f"Authorization: token {SECRET}", "x"], "pid": 7}),
    ]
    return [
        Event(sid, kind, start + timedelta(minutes=3, seconds=i), payload, stable_id(sid, "dialogue", i))
        for i, (kind, payload) in enumerate(rows)
    ]


def _snapshot(engine: Engine) -> dict[str, Any]:
    reports = {n: run_report(engine, n, Filters()).sections for n in sorted(REPORTS) if n != "reconcile"}
    with engine.connect() as conn:
        sessions = conn.execute(text("SELECT * FROM sessions ORDER BY session_id")).mappings().all()
        calls = conn.execute(text("SELECT * FROM llm_calls ORDER BY call_id")).mappings().all()
        files = conn.execute(text("SELECT session_id, path, lines_added, lines_removed FROM file_changes")).all()
    return {"reports": reports, "sessions": sessions, "calls": calls, "files": sorted(files)}


def _content(engine: Engine, sid: str) -> dict[str, Any]:
    with engine.connect() as conn:
        events = {
            k: orjson.loads(p)
            for k, p in conn.execute(
                text(
                    "SELECT kind, payload FROM event WHERE session_id = :s AND kind IN "
                    "('prompt','response','tool_call','tool_result') OR (session_id = :s AND kind = 'exec' "
                    "AND payload LIKE '%curl%')"
                ),
                {"s": sid},
            )
        }
        diffs = conn.execute(text("SELECT diff FROM file_change WHERE session_id = :s"), {"s": sid}).scalars().all()
        command = conn.execute(text("SELECT command FROM agent_session WHERE session_id = :s"), {"s": sid}).scalar()
    return {"events": events, "diffs": diffs, "command": orjson.loads(command) if command else None}


@pytest.fixture
def org(db_url: str) -> Engine:
    engine = open_engine(db_url)
    org = build_org(engine)
    for sid in (OLD, NEW):
        s = by_sid()[sid]
        extra = [
            *_dialogue(sid, s.start),
            Event(
                sid,
                "file_write",
                s.start + timedelta(minutes=4),
                {"source": "snapshot", "path": "secret.py", "lines_added": 0, "lines_removed": 0, "diff": "-a\n+b\n"},
                stable_id(sid, "diff"),
            ),
        ]
        ingest(engine, extra)
        with engine.begin() as conn:  # the launch line, as `agenttrail run` records it
            conn.execute(
                text("UPDATE agent_session SET command = :c WHERE session_id = :s"),
                {"c": orjson.dumps(["/opt/bin/claude", "-p", "deploy with " + SECRET]).decode(), "s": sid},
            )
    assert org.team_ids
    return engine


def test_purge_drops_old_content_and_keeps_every_figure(org: Engine) -> None:
    engine = org
    before = _snapshot(engine)
    old, new = _content(engine, OLD), _content(engine, NEW)
    assert old["events"]["prompt"]["text"].startswith("please fix") and any(old["diffs"])

    purged = purge_content(engine, W20, batch=2)  # a tiny batch walks several pages per kind
    old_sessions = [s for s in SESSIONS if s.start < W20]
    # p1's five dialogue events, every earlier session's commands; the one diff and launch line p1 has.
    assert purged.as_dict() == {
        "events": 5 + sum(s.commands for s in old_sessions),
        "diffs": 1,
        "commands": 1,
        "cached_responses": 0,
    }

    assert _snapshot(engine) == before
    after_old = _content(engine, OLD)
    assert after_old["events"]["prompt"] == {"purged": True, "agent": "claude-code"}
    assert after_old["events"]["tool_call"]["tool"] == "Bash" and "input" not in after_old["events"]["tool_call"]
    assert "output" not in after_old["events"]["tool_result"]
    assert "text" not in after_old["events"]["response"]
    exec_ = after_old["events"]["exec"]
    assert exec_["program"] == "curl" and "argv" not in exec_ and exec_["pid"] == 7
    assert after_old["diffs"] == [None] * len(after_old["diffs"])
    assert after_old["command"] == ["claude"]
    assert _content(engine, NEW) == new  # after the cutoff: untouched

    again = purge_content(engine, W20)
    assert again.as_dict() == {"events": 0, "diffs": 0, "commands": 0, "cached_responses": 0}


def test_dry_run_counts_what_a_purge_would_do_and_changes_nothing(org: Engine) -> None:
    engine = org
    old = _content(engine, OLD)
    counted = purge_content(engine, W20, dry_run=True, batch=3)
    assert _content(engine, OLD) == old
    assert purge_content(engine, W20) == counted


def test_purged_payload_keeps_short_identifiers_only() -> None:
    long_name = "x" * 500
    kept = purged_payload("tool_call", {"name": long_name, "tool": "Edit", "input": {"a": 1}, "pid": 3, "text": "hi"})
    assert kept == {"purged": True, "tool": "Edit", "pid": 3}


def test_retention_settings_are_checked(tmp_path: Any) -> None:
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text("[retention]\ncontent_days = 90\nevery_hours = 6\n")
    rs = retention_settings(load_settings(config_file=cfg, env={"AGENTTRAIL_HOME": str(tmp_path)}))
    assert (rs.content_days, rs.every_s) == (90, 6 * 3600.0)
    for bad in ("content_days = 0", "content_days = 'soon'", "every_hours = -1", "keep = 3"):
        cfg.write_text(f"[retention]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[retention\]"):
            retention_settings(load_settings(config_file=cfg, env={"AGENTTRAIL_HOME": str(tmp_path)}))
