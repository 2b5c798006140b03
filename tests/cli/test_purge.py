"""`agenttrail purge` as a user runs it: dry run first, then the purge, audited; bad cutoffs explained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from tests.cli.test_org_keys_sql import at

from agenttrail.events import Event, stable_id
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.tables import audit_log, event


def test_dry_run_then_purge_then_nothing_left(db_url: str, home: str) -> None:
    engine = open_engine(db_url)
    old = datetime.now(UTC) - timedelta(days=200)
    ingest(
        engine,
        [
            Event("s", "session_start", old, {"agent": "codex"}, stable_id("s", 0)),
            Event("s", "prompt", old, {"text": "the old plan"}, stable_id("s", 1)),
            Event("s", "response", old, {"text": "done"}, stable_id("s", 2)),
        ],
    )
    dry = json.loads(at("purge", "--older-than", "90d", "--dry-run", "--json", db=db_url).stdout)
    assert (dry["dry_run"], dry["events"]) == (True, 2)
    with engine.connect() as conn:
        assert "the old plan" in "".join(conn.execute(select(event.c.payload)).scalars())
        assert conn.execute(select(audit_log).where(audit_log.c.action == "purge_content")).first() is None

    done = at("purge", "--older-than", "90d", db=db_url)
    assert "purged content recorded before" in done.stdout and "2 events" in done.stdout
    assert done.stdout.startswith("purged")  # the progress bar's leftovers belong on stderr, not in the output
    with engine.connect() as conn:
        assert "the old plan" not in "".join(conn.execute(select(event.c.payload)).scalars())
        (actor,) = conn.execute(select(audit_log.c.actor).where(audit_log.c.action == "purge_content")).one()
    assert actor.startswith("cli:")
    assert json.loads(at("purge", "--older-than", "90d", "--json", db=db_url).stdout)["events"] == 0


def test_an_unreadable_cutoff_is_explained(db_url: str, home: str) -> None:
    p = at("purge", "--older-than", "last spring", db=db_url, check=False)
    assert p.returncode == 1
    assert "cannot read 'last spring'" in p.stderr and "Traceback" not in p.stderr


def test_help_names_the_setting_as_written_in_the_toml() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agenttrail", "purge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    # Rich markup ate "[retention]" and left "set ` content_days = 90`".
    assert "`[retention] content_days = 90`" in done.stdout
