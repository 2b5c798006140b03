"""GitHub `pull_request` webhooks: signature check and the facts a merged PR's payload gives.

The payload does not list the PR's commits. It names the head commit (the branch tip the sessions
committed, so a recorded sha links it) and the merge commit, and its body may carry
`Agent-Session:` trailers; `agenttrail link-prs` on a clone later adds every commit and the merge kind.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from agenttrail.linking.record import PullRequestFacts, session_trailers
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


def facts_from_webhook(payload: dict[str, Any]) -> PullRequestFacts | None:
    """The merged PR in a `pull_request` event, or None when the event is not a merge."""
    pr = payload.get("pull_request")
    if payload.get("action") != "closed" or not isinstance(pr, dict) or pr.get("merged") is not True:
        return None
    repo, number = _repo(payload), pr.get("number")
    if not repo or not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise ValueError("the pull_request event has no repository URL or PR number")
    merged_at = pr.get("merged_at")
    when = datetime.fromisoformat(merged_at.replace("Z", "+00:00")) if isinstance(merged_at, str) else None
    if when is not None and when.tzinfo is not None:
        try:
            when = when.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"merged_at {merged_at!r} is out of range") from None
    head = _obj(pr.get("head")).get("sha")
    merge_sha = pr.get("merge_commit_sha")
    commits = [s for s in (merge_sha, head) if isinstance(s, str) and s]
    return PullRequestFacts(
        repo=repo,
        number=number,
        title=pr.get("title") if isinstance(pr.get("title"), str) else None,
        merged_at=when,
        merge_sha=merge_sha if isinstance(merge_sha, str) else None,
        merge_kind=None,
        source="webhook",
        commits=commits,
        sessions=session_trailers(f"{pr.get('title') or ''}\n{pr.get('body') or ''}"),
    )
