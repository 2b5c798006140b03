"""The query API: reports, read-only SQL and exports, for API tokens with a role.

- `GET /api/v1/reports` lists the reports; `GET /api/v1/reports/{name}` runs one, with `since`,
  `until`, `team`, `repo` and the report's own options as query parameters (`format=csv` and
  `section=` for one section as CSV). The JSON is what `agenttrail report NAME --format json` prints.
- `POST /api/v1/sql` with `{"sql": "...", "max_rows": N, "timeout_s": T}`.
- `GET /api/v1/export?format=csv|json|focus|security&what=sessions|calls&since=&until=&team=&repo=`.

`Authorization: Bearer at-api-…` (see `agenttrail token create`). finance and lead tokens never
reach content (prompts, responses, commands, diffs): SQL runs over the aggregate views only and the
security export is refused; a lead sees only its team. Every read of content is written to
`audit_log` with the token that read it.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator
from typing import Any, TextIO, cast

import orjson
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from agenttrail.exports import FORMATS as EXPORT_FORMATS
from agenttrail.exports.run import CONTENT_FORMATS, MEDIA_TYPES, ExportError, export
from agenttrail.query.access import AccessDenied, Principal, audit
from agenttrail.query.readonly_sql import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, SQLRefused, run_sql, views_named
from agenttrail.query.tokens import lookup_token
from agenttrail.reports.base import Filters
from agenttrail.reports.period import PeriodError, parse_when
from agenttrail.reports.registry import OPTIONS, REPORTS, ReportError, run_report
from agenttrail.reports.render import render_report
from agenttrail.server.app import Services
from agenttrail.server.body import BodyTooLarge, read_body
from agenttrail.store.views import CONTENT_VIEWS

MAX_SQL_ROWS = 100_000
MAX_SQL_TIMEOUT_S = 60.0
MAX_SQL_BODY = 1024 * 1024
_CHUNK = 256 * 1024


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)


def install(svc: Services) -> list[BaseRoute]:
    engine, clock = svc.engine, svc.clock

    async def principal(request: Request) -> Principal:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused(401, "give an API token as `Authorization: Bearer at-api-…` (agenttrail token create)")
        info = await to_thread.run_sync(lookup_token, engine, token.strip())
        if info is None:
            raise _Refused(401, "this API token is unknown or revoked; `agenttrail token list` shows the live ones")
        return Principal(info.role, info.label, info.team)

    def filters(request: Request, who: Principal) -> Filters:
        q = request.query_params
        now = clock.now()
        try:
            f = Filters(
                parse_when(q.get("since"), now=now),
                parse_when(q.get("until"), now=now, end=True),
                q.get("team") or None,
                q.get("repo") or None,
            )
        except PeriodError as e:
            raise _Refused(400, str(e)) from None
        return who.scope(f)

    async def guarded(request: Request, handler: Any) -> Response:
        try:
            if any("\x00" in v for v in request.query_params.values()):
                # No stored name holds one, and PostgreSQL refuses it in a parameter (a 500 before).
                raise _Refused(400, "a query parameter holds a NUL character (%00)")
            who = await principal(request)
            response: Response = await handler(request, who)
            return response
        except _Refused as e:
            return _problem(e.status, e.message)
        except AccessDenied as e:
            return _problem(403, str(e))

    async def list_reports(request: Request, who: Principal) -> Response:
        return JSONResponse({"reports": [{"name": n, "options": list(OPTIONS.get(n, ()))} for n in REPORTS]})

    async def report(request: Request, who: Principal) -> Response:
        name = request.path_params["name"]
        if name not in REPORTS:
            raise _Refused(404, f"no report named {name!r}; reports: {', '.join(REPORTS)}")
        f = filters(request, who)
        opts = {k: request.query_params[k] for k in OPTIONS.get(name, ()) if k in request.query_params}
        fmt, section = request.query_params.get("format", "json"), request.query_params.get("section")
        if fmt not in ("json", "csv"):
            raise _Refused(400, "format must be json or csv")
        try:
            rep = await to_thread.run_sync(lambda: run_report(engine, name, f, opts))
            if section:
                rep.section(section)
        except (ReportError, KeyError) as e:
            raise _Refused(400, str(e).strip("'\"")) from None
        if fmt == "csv":
            buf = io.StringIO()
            render_report(rep, "csv", section=section, out=buf)
            return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
        return Response(orjson.dumps(rep.to_json()), media_type="application/json")

    async def sql(request: Request, who: Principal) -> Response:
        try:
            body = orjson.loads(await read_body(request, MAX_SQL_BODY))
        except orjson.JSONDecodeError:
            raise _Refused(400, 'the body must be JSON: {"sql": "SELECT …"}') from None
        except BodyTooLarge as e:
            raise _Refused(413, f"{e}; a SQL request is one statement") from None
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            raise _Refused(400, 'the body must be JSON: {"sql": "SELECT …"}')
        try:
            max_rows = min(int(body.get("max_rows", DEFAULT_MAX_ROWS)), MAX_SQL_ROWS)
            timeout_s = min(float(body.get("timeout_s", DEFAULT_TIMEOUT_S)), MAX_SQL_TIMEOUT_S)
        except (TypeError, ValueError):
            raise _Refused(400, "max_rows and timeout_s must be numbers") from None
        views = who.sql_views()
        text = body["sql"]
        content = views_named(text) & CONTENT_VIEWS
        if content and who.sees_content:
            # Written before the query runs: an attempt to read content is on record even if it fails.
            await to_thread.run_sync(
                audit, engine, who, "sql", {"sql": text[:4000], "views": sorted(content)}, clock.now()
            )
        try:
            res = await to_thread.run_sync(
                lambda: run_sql(engine, text, timeout_s=timeout_s, max_rows=max_rows, views=views)
            )
        except SQLRefused as e:
            raise _Refused(400, str(e)) from None
        payload = {"columns": res.columns, "rows": res.records(), "truncated": res.truncated, "max_rows": res.max_rows}
        return Response(orjson.dumps(payload), media_type="application/json")

    async def export_route(request: Request, who: Principal) -> Response:
        q = request.query_params
        fmt, what = q.get("format", ""), q.get("what", "sessions")
        if fmt not in EXPORT_FORMATS:
            raise _Refused(400, f"format must be one of {', '.join(EXPORT_FORMATS)}")
        f = filters(request, who)
        if fmt in CONTENT_FORMATS:
            who.require_content(f"the {fmt} export")
            await to_thread.run_sync(audit, engine, who, "export", {"format": fmt, **f.as_dict()}, clock.now())
        # Closed by the streaming body below, after the last chunk (a `with` would close it too early).
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=16 * 1024 * 1024, mode="w+", encoding="utf-8", newline=""
        )

        def write() -> int:
            n = export(engine, fmt, f, cast(TextIO, spool), what=what)
            spool.seek(0)
            return n

        try:
            n = await to_thread.run_sync(write)
        except ExportError as e:
            spool.close()
            raise _Refused(400, str(e)) from None

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await to_thread.run_sync(spool.read, _CHUNK):
                    yield chunk.encode()
            finally:
                spool.close()

        ext = {"csv": "csv", "focus": "csv"}.get(fmt, "ndjson")
        headers = {
            "content-disposition": f'attachment; filename="agenttrail-{fmt}.{ext}"',
            "x-agenttrail-records": str(n),
        }
        return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt], headers=headers)

    def route(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return await guarded(request, handler)

        return endpoint

    return [
        Route("/api/v1/reports", route(list_reports), methods=["GET"]),
        Route("/api/v1/reports/{name}", route(report), methods=["GET"]),
        Route("/api/v1/sql", route(sql), methods=["POST"]),
        Route("/api/v1/export", route(export_route), methods=["GET"]),
    ]
