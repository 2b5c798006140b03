"""`POST /api/v1/webhooks/github`: merged pull requests as GitHub announces them.

The body's HMAC-SHA256 (`X-Hub-Signature-256`) must match the configured secret
(`AGENTTRAIL_GITHUB_WEBHOOK_SECRET`, or `webhook_secret` under `[github]` in agenttrail.toml); without
a secret every delivery is refused, so an unconfigured server cannot be fed PRs by anyone. A
`pull_request` event that is closed and merged is recorded and linked the way `agenttrail link-prs`
does it (`linking.record_pull_requests`); a redelivery changes nothing.
"""

from __future__ import annotations

import os

import orjson
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agenttrail.linking import record_pull_requests
from agenttrail.linking.github import facts_from_webhook, verify_signature
from agenttrail.server.app import Services
from agenttrail.server.body import BodyTooLarge, read_body

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
SECRET_ENV = "AGENTTRAIL_GITHUB_WEBHOOK_SECRET"


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)


def webhook_secret(svc: Services) -> str | None:
    value = os.environ.get(SECRET_ENV) or svc.settings.section("github").get("webhook_secret")
    return str(value) if value else None


def install(svc: Services) -> list[BaseRoute]:
    secret = webhook_secret(svc)

    async def github(request: Request) -> Response:
        if not secret:
            return _problem(
                503,
                f"no webhook secret is configured: set {SECRET_ENV} or [github] webhook_secret, and the same in GitHub",
            )
        try:
            body = await read_body(request, MAX_BODY)
        except BodyTooLarge:
            return _problem(413, "the payload is larger than GitHub ever sends")
        if not verify_signature(secret, body, request.headers.get("x-hub-signature-256")):
            return _problem(401, "the X-Hub-Signature-256 signature does not match the configured secret")
        event = request.headers.get("x-github-event", "")
        if event == "ping":
            return JSONResponse({"ok": True, "event": "ping"})
        if event != "pull_request":
            return JSONResponse({"ignored": f"event {event or '(none)'} is not pull_request"}, status_code=202)
        try:
            payload = orjson.loads(body)
            facts = facts_from_webhook(payload if isinstance(payload, dict) else {})
        except (orjson.JSONDecodeError, ValueError) as e:
            return _problem(400, f"cannot read the pull_request event: {e}")
        if facts is None:
            return JSONResponse({"ignored": "the pull request was not closed as merged"}, status_code=202)
        result = await to_thread.run_sync(record_pull_requests, svc.engine, [facts])
        return JSONResponse({"repo": facts.repo, "number": facts.number, **result.as_dict()})

    return [Route("/api/v1/webhooks/github", github, methods=["POST"])]
