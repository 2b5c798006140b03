"""`agenttrail seed-demo`: a synthetic organisation, through the real ingest and link paths."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, engine_for, fail, friendly, progress_bar
from agenttrail.reports.demo_org import DemoOrg
from agenttrail.reports.period import END_YEAR

MAX_ENGINEERS = 100_000  # 7,500 over 90 days is already a million sessions (bench/record.py)
MAX_DAYS = 3_660


def register(app: typer.Typer) -> None:
    @app.command("seed-demo", rich_help_panel="Admin")
    @friendly
    def seed_demo(
        engineers: int = typer.Option(50, "--engineers", help="How many engineers (teams of about eight)."),
        days: int = typer.Option(30, "--days", help="How many days of history, ending at --end."),
        seed: int = typer.Option(42, "--seed", help="The random seed: the same seed gives the same organisation."),
        end: str | None = typer.Option(None, "--end", help="The last day (default: today, UTC)."),
        batch: int = typer.Option(20_000, "--batch", help="Events per ingest batch."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Build teams, engineers, sessions, calls, commits and merged PRs for demos and benchmarks.

        Everything goes through the real ingest (events) and PR-linking paths. Seeding twice with the
        same seed and end changes nothing.

        Example: agenttrail seed-demo --engineers 20 --days 14 --db sqlite:///demo.db
        """
        if engineers < 1 or days < 1:
            fail("--engineers and --days must be at least 1")
        if engineers > MAX_ENGINEERS:
            fail(f"--engineers {engineers:,} is more than a demo needs: at most {MAX_ENGINEERS:,}")
        if days > MAX_DAYS:
            fail(f"--days {days:,} is more than a demo needs: at most {MAX_DAYS:,} (ten years)")
        try:
            last = date.fromisoformat(end) if end else datetime.now(UTC).date()
        except ValueError:
            fail(f"--end must be a date like 2026-05-31, not {end!r}")
            return
        if last.year >= END_YEAR or last - timedelta(days=days - 1) < date(1, 1, 2):
            fail(f"--end {last} with --days {days} is out of range: the reports read years 1 to {END_YEAR - 1}")
        demo = DemoOrg(engine_for(db, config), engineers, days, seed, last, batch_events=batch)
        started = datetime.now(UTC)
        with progress_bar("seeding", days, "days") as advance:
            stats = demo.run(advance)
        took = (datetime.now(UTC) - started).total_seconds()
        rate = stats.events / stats.ingest_seconds if stats.ingest_seconds else 0.0
        console.print(
            f"{stats.teams} teams, {stats.projects} repos, {stats.engineers} engineers, {stats.sessions} sessions, "
            f"{stats.events} events ({stats.calls} calls in sessions, {stats.unattributed_calls} outside), "
            f"{stats.pull_requests} merged PRs in {took:.1f} s (ingest {rate:,.0f} events/s)",
            highlight=False,
        )
