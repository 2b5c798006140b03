"""`agenttrail link-prs`: tie sessions to the pull requests that merged their commits, from git history."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, engine_for, fail, friendly, progress_bar, working
from agenttrail.linking.git import GitError, read_pull_requests, repo_name
from agenttrail.linking.record import record_pull_requests

BAR_FROM = 5_000  # more PRs than one recorded chunk: worth a bar


def register(app: typer.Typer) -> None:
    @app.command("link-prs", rich_help_panel="Reports")
    @friendly
    def link_prs(
        repo_path: Path = typer.Argument(
            ..., help="A clone of the repository (fetch refs/pull/* to find rebase merges)."
        ),
        branch: str = typer.Option("main", "--branch", help="The mainline PRs merge into."),
        repo: str | None = typer.Option(None, "--repo", help="The repo's name (default: from the origin remote)."),
        as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Record the mainline's merged PRs (merge, squash and rebase merges) and link them to sessions by
        the Agent-Session trailer and by the commit shas the tracer recorded. Running it again changes nothing.

        Rebase merges leave no PR number in the commits; fetch the pull refs first:
        git fetch origin '+refs/pull/*/head:refs/pull/*/head'

        Example: agenttrail link-prs ~/src/checkout --branch main, then agenttrail report shipped
        """
        if not repo_path.is_dir():
            fail(f"{repo_path} is not a directory")
        engine = engine_for(db, config)
        try:
            with working(f"reading the history of {branch} in {repo_path}"):
                prs = read_pull_requests(repo_path, repo or repo_name(repo_path), branch)
            with progress_bar("recording", len(prs), "merged PRs", show=len(prs) > BAR_FROM) as advance:
                result = record_pull_requests(engine, prs, progress=advance)
        except GitError as e:
            fail(str(e))
            return
        if as_json:
            console.print_json(orjson.dumps(result.as_dict()).decode())
            return
        console.print(
            f"{result.pull_requests} merged PRs: {result.new_pull_requests} new, "
            f"{result.updated_pull_requests} updated, {result.new_commits} commits and "
            f"{result.new_trailer_links} trailer links added"
        )
