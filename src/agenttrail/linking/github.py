"""GitHub `pull_request` webhooks: signature check and the facts a merged PR's payload gives.

The payload does not list the PR's commits. It names the head commit (the branch tip the sessions
committed, so a recorded sha links it) and the merge commit, and its body may carry
`Agent-Session:` trailers; `agenttrail link-prs` on a clone later adds every commit and the merge kind.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

from agenttrail.linking.record import PullRequestFacts, session_trailers
from agenttrail.reports.period import END_YEAR
from agenttrail.tracer.git_identity import normalize_remote_url


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of `X-Hub-Signature-256`."""
    if not secret or not header:
        return False
    return hmac.compare_digest(signature(secret, body), header.strip())


def _obj(value: Any) -> dict[str, Any]:
    """A part of the payload that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def _repo(payload: dict[str, Any]) -> str | None:
    repo = _obj(payload.get("repository"))
    for key in ("html_url", "clone_url", "ssh_url"):
        url = repo.get(key)
        if isinstance(url, str) and url:
            return normalize_remote_url(url)
    full = repo.get("full_name")
    return f"github.com/{full}" if isinstance(full, str) and full else None


MAX_PR_NUMBER = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
MAX_REPO = 500  # pull_request.repo
_SHA = re.compile(r"[0-9A-Za-z]{1,64}")  # SHA-1 (40) or SHA-256 (64) in hex; tests spell theirs freely


def _sha(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise ValueError(f"{field} {str(value)[:80]!r} is not a commit sha")
    return value


def facts_from_webhook(payload: dict[str, Any]) -> PullRequestFacts | None:
    """The merged PR in a `pull_request` event, or None when the event is not a merge."""
    pr = payload.get("pull_request")
    if payload.get("action") != "closed" or not isinstance(pr, dict) or pr.get("merged") is not True:
        return None
    repo, number = _repo(payload), pr.get("number")
    if not repo or not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError("the pull_request event has no repository URL or PR number")
    if number > MAX_PR_NUMBER:
        raise ValueError(f"PR number {number} is out of range (at most {MAX_PR_NUMBER})")
    if len(repo) > MAX_REPO or "\x00" in repo:
        raise ValueError(f"the repository URL is not one ({len(repo)} characters)")
    merged_at = pr.get("merged_at")
    when = datetime.fromisoformat(merged_at.replace("Z", "+00:00")) if isinstance(merged_at, str) else None
    if when is not None and when.tzinfo is not None:
        try:
            when = when.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"merged_at {merged_at!r} is out of range") from None
    if when is not None and when.year >= END_YEAR:
        raise ValueError(f"merged_at {merged_at!r} is out of range (the reports read years before {END_YEAR})")
    head = _sha(_obj(pr.get("head")).get("sha"), "head.sha")
    merge_sha = _sha(pr.get("merge_commit_sha"), "merge_commit_sha")
    commits = [s for s in (merge_sha, head) if s]
    title = pr.get("title")
    return PullRequestFacts(
        repo=repo,
        number=number,
        # PostgreSQL's text cannot hold NUL; a title is prose, so the character goes, not the event.
        title=title.replace("\x00", "") if isinstance(title, str) else None,
        merged_at=when,
        merge_sha=merge_sha,
        merge_kind=None,
        source="webhook",
        commits=commits,
        sessions=session_trailers(f"{pr.get('title') or ''}\n{pr.get('body') or ''}"),
    )
