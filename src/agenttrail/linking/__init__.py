"""Tie agent sessions to the pull requests that merged their work.

`git.py` reads a mainline's history (merge, squash and rebase merges); `webhook facts` come from
GitHub; both end in `record.record_pull_requests`, the one write path. Commits link to sessions by the
`Agent-Session:` trailer and by the commit shas the tracer recorded (the latter through database
triggers, so a commit recorded after its PR was linked still links).
"""

from agenttrail.linking.record import LinkResult, PullRequestFacts, record_pull_requests

__all__ = ["LinkResult", "PullRequestFacts", "record_pull_requests"]
