"""Errors in each provider's own shape, so SDKs and agent CLIs show the message to a person."""

from __future__ import annotations

import orjson
from starlette.responses import Response

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class GatewayError(Exception):
    """A call the gateway answers itself, with a status and a message a person can act on."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        retry: bool | None = None,
        retry_after_s: int | None = None,
        record_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.retry = retry
        self.retry_after_s = retry_after_s
        self.record_status = record_status or ("refused" if status in (401, 403, 429) else "error")


def anthropic_body(status: int, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}


def openai_body(status: int, message: str, code: str | None = None) -> dict[str, object]:
    etype = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def error_response(provider: str, err: GatewayError) -> Response:
    body = (
        anthropic_body(err.status, err.message)
        if provider == "anthropic"
        else openai_body(err.status, err.message, err.code)
    )
    headers = {}
    if err.retry is not None:
        # Both SDKs and Claude Code read this before their own retry logic; "false" stops retry storms.
        headers["x-should-retry"] = "true" if err.retry else "false"
    if err.retry_after_s is not None:
        headers["retry-after"] = str(max(0, int(err.retry_after_s)))
    return Response(orjson.dumps(body), status_code=err.status, headers=headers, media_type="application/json")


def stream_error_event(provider: str, message: str) -> bytes:
    """An error delivered inside an already-started stream (the status line is gone by then)."""
    if provider == "anthropic":
        return b"event: error\ndata: " + orjson.dumps(anthropic_body(502, message)) + b"\n\n"
    return b"data: " + orjson.dumps(openai_body(502, message, "upstream_stream_error")) + b"\n\n"


def internal_error(provider: str, exc: BaseException) -> Response:
    """A bug in agenttrail itself, still in the provider's shape so the client shows a message."""
    return error_response(provider, GatewayError(500, f"agenttrail internal error: {type(exc).__name__}"))
