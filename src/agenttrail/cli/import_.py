"""`agenttrail import claude-code|codex [PATH]`: the agents' own transcripts into the record.

Local by default: events go through the same idempotent ingest as everything else, into the store named
by `--db`. With `--server URL` they are queued in a local outbox (one per server, not the tracer's) and
uploaded to that server's `/api/v1/ingest` with `--key`; the join and the dedupe then run there.

Read positions live in the local store's `import_state` (per destination), so a second import reads
only files that changed, and stores only what it did not have (ids are stable). Damaged lines are
counted, listed (the first few) and skipped; they never stop an import and never print a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, UserError, console, err_console, friendly, settings_for
from agenttrail.config import Settings
from agenttrail.events import LLM_CALL, SESSION_END, SESSION_START, Event
from agenttrail.importers import (
    CLAUDE_CODE,
    CODEX,
    ImportBatch,
    LineError,
    TranscriptCall,
    claude_projects_dirs,
    codex_home,
    find_claude_code_files,
    find_codex_files,
    iter_claude_code,
    iter_codex,
)
from agenttrail.importers.jsonl import _scan as _native
from agenttrail.usage import Usage, sum_usages

if TYPE_CHECKING:
    # The store (SQLAlchemy, Alembic), ingest and the event builder are imported where they are used: a
    # dry run needs none of them, and importing them cost it ~0.6 s of CPU before reading a byte.
    from agenttrail.importers.store_state import SqlStateStore
    from agenttrail.pricing import Pricer
    from agenttrail.store.event_fields import BadEvent

import_app = typer.Typer(
    help="Import the agents' own transcripts: Claude Code (~/.claude/projects) and Codex ($CODEX_HOME/sessions).",
    no_args_is_help=True,
)

FLUSH_EVENTS = 5_000  # events per ingest transaction (or outbox put): few fsyncs, bounded memory
# A usage-only dry run of Codex counts its calls in the native scanner's tally (no record a call) where the
# scanner is built; tests turn it off to compare with the records' totals.
TALLY = True
SHOW_ERRORS = 10
KEY_ENV = "AGENTTRAIL_KEY"


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import", rich_help_panel="Record")


@dataclass
class Totals:
    files: int = 0
    files_read: int = 0
    files_skipped: int = 0
    bytes_read: int = 0
    lines: int = 0
    sessions: set[tuple[str, str]] = field(default_factory=set)
    calls: int = 0
    events: int = 0
    stored: int = 0  # events the store (or the server) did not have
    duplicates: int = 0
    queued: int = 0  # --server: events put in the outbox that it did not hold yet
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    errors: list[LineError] = field(default_factory=list)
    warnings: int = 0
    _cost: Decimal = Decimal(0)  # add_priced's exact sum; cost_usd is its float
    # add_priced's calls so far by id: a call read again in a later batch (a copy of a rollout, in
    # sessions/ and archived_sessions/) is merged into its first reading, not counted twice.
    _seen: dict[str, tuple[str, str | None, Usage]] = field(default_factory=dict)

    def add(self, batch: ImportBatch, events: list[Event]) -> None:
        """A stored (or uploaded) batch: its calls' costs as its `llm_call` events carry them."""
        self._add_batch(batch)
        self.usage = self.usage + sum_usages(list(map(_USAGE, batch.calls)))
        for e in events:
            if e.kind == LLM_CALL:
                self.calls += 1
                self.cost_usd += float(e.payload["record"].get("cost_usd") or 0.0)
            elif e.kind not in (SESSION_START, SESSION_END):  # a session's markers repeat per file
                self.events += 1

    def add_priced(self, batch: ImportBatch, pricer: Pricer) -> None:
        """A batch that becomes no events (a dry run): the same counts and cost as `add` would take from
        `batch_to_events(batch, pricer)`, without an event per call. Its calls are priced together per
        model (`Pricer.cost_of_many`, equal to the sum of each call's price)."""
        self._add_batch(batch)
        calls = batch.calls
        ids = list(map(_CALL_ID, calls))
        seen = self._seen
        if seen.keys().isdisjoint(ids) and len(set(ids)) == len(ids):  # all new: no loop in Python
            # What a later reading is merged with: its model and usage, not the record (half the memory).
            seen.update(
                zip(ids, zip(map(_PROVIDER, calls), map(_MODEL, calls), map(_USAGE, calls), strict=True), strict=True)
            )
        else:  # calls totalled before (a copied file, in an earlier batch or this one): once each
            fresh = []
            for call_id, c in zip(ids, calls, strict=True):
                if call_id in seen:
                    self._fold(call_id, c, pricer)  # a fresh one of this batch is totalled below, as it was
                else:
                    fresh.append(c)
                    seen[call_id] = (c.provider, c.model, c.usage)
            calls = fresh
        self.calls += len(calls)
        self.events += sum(1 for e in batch.events if e.kind not in (SESSION_START, SESSION_END))
        for (provider, model), usages in _usages_by_model(calls).items():
            total = _sum(usages)
            self.usage = self.usage + total
            self._cost += pricer.cost_of_many(provider, model, usages, total)
        self.cost_usd = float(self._cost)

    def add_tally(self, tally: Any, pricer: Pricer) -> bool:
        """The calls a native tally counted (a usage-only dry run of Codex: `_scan.Tally`, no record a
        call), each once, merged as `add_priced` merges a call read again, and priced per model
        (`Pricer.cost_of_group`, equal to the sum of each call's price). False when the tally could not
        hold a count (past 64 bits): the caller counts that import again with records."""
        groups = tally.groups()
        if groups is None or tally.spoiled:
            return False
        for provider, model, n, sums, largest in groups:
            total = Usage(*sums)
            self.calls += n
            self.usage = self.usage + total
            usages = functools.partial(_tally_usages, tally, provider, model)
            self._cost += pricer.cost_of_group(provider, model, total, largest, usages)
        self.cost_usd = float(self._cost)
        return True

    def _fold(self, call_id: str, again: TranscriptCall, pricer: Pricer) -> None:
        """A call totalled before, read again: merged as the store merges it (each count's maximum, a
        missing model filled), and the totals moved by the difference."""
        provider, model, usage = self._seen[call_id]
        merged = Usage(*map(max, _fields(usage), _fields(again.usage)))
        merged_model = model or again.model
        if merged != usage or merged_model != model:
            self._seen[call_id] = (provider, merged_model, merged)
            self.usage = Usage(
                *(a + b - c for a, b, c in zip(_fields(self.usage), _fields(merged), _fields(usage), strict=True))
            )
            self._cost += pricer.cost_of_many(provider, merged_model, [merged])
            self._cost -= pricer.cost_of_many(provider, model, [usage])

    def _add_batch(self, batch: ImportBatch) -> None:
        self.files_read += batch.files_read
        self.files_skipped += batch.files_skipped
        self.bytes_read += batch.bytes_read
        self.lines += batch.lines_read
        self.sessions.update((s.agent, s.agent_session_id) for s in batch.sessions)
        self.errors.extend(batch.errors)
        self.warnings += len(batch.warnings)

    def as_dict(self) -> dict[str, Any]:
        u = self.usage
        return {
            "files": self.files,
            "files_read": self.files_read,
            "files_unchanged": self.files_skipped,
            "bytes_read": self.bytes_read,
            "lines_read": self.lines,
            "sessions": len(self.sessions),
            "calls": self.calls,
            "events": self.events,
            "stored_new": self.stored,
            "already_stored": self.duplicates,
            "input_tokens": u.input_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "output_tokens": u.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unreadable_lines": len(self.errors),
            "warnings": self.warnings,
        }


_USAGE = attrgetter("usage")
_CALL_ID = attrgetter("call_id")
_fields = attrgetter(*(f.name for f in fields(Usage)))
_PROVIDER = attrgetter("provider")
_MODEL = attrgetter("model")
_NO_USAGE = Usage()


def _tally_usages(tally: Any, provider: str, model: str | None) -> list[Usage]:
    return [Usage(*u) for u in tally.usages(provider, model)]


def _usages_by_model(calls: list[TranscriptCall]) -> dict[tuple[str, str | None], list[Usage]]:
    providers, models = set(map(_PROVIDER, calls)), set(map(_MODEL, calls))  # no tuple per call
    if len(providers) == len(models) == 1:  # one model throughout, the usual batch: no loop in Python
        return {(providers.pop(), models.pop()): list(map(_USAGE, calls))}
    out: dict[tuple[str, str | None], list[Usage]] = {}
    for c in calls:
        out.setdefault((c.provider, c.model), []).append(c.usage)
    return out


def _sum(usages: list[Usage]) -> Usage:
    """`sum_usages`, in one pass of the native scanner's (`_scan.sums`) where it is built, instead of one
    pass a field: ~40% of a dry run's totalling (it falls back to `sum_usages` for anything unusual)."""
    if _native is not None:
        fields = _native.sums(usages, _NO_USAGE)
        if fields is not None:
            return Usage(*fields)
    return sum_usages(usages)


class Sink:
    """Where events go: the local store, or the outbox of a server upload."""

    def put(self, events: list[Event]) -> tuple[int, int]:  # (new, duplicates)
        raise NotImplementedError

    def close(self, totals: Totals) -> None:
        pass

    def abort(self) -> None:
        pass


class DrySink(Sink):
    """--dry-run: the events are counted and priced, then dropped."""

    def put(self, events: list[Event]) -> tuple[int, int]:
        return 0, 0


class LocalSink(Sink):
    def __init__(self, settings: Settings) -> None:
        from agenttrail.store.database import open_engine

        self.engine = open_engine(settings.database_url)

    def put(self, events: list[Event]) -> tuple[int, int]:
        from agenttrail.store.event_fields import BadEvent
        from agenttrail.store.ingest import Attribution, ingest

        while True:
            try:
                r = ingest(self.engine, events, Attribution())
                return r.accepted, r.duplicates
            except BadEvent as e:
                events = _left_out(events, e)


def _left_out(events: list[Event], e: BadEvent) -> list[Event]:
    """A value no column can hold (an id longer than any, from a damaged file): that event is left out
    and named, as an unreadable line is, and the import goes on."""
    err_console.print(f"left out: {e}", markup=False, highlight=False, soft_wrap=True)
    return events[: e.index] + events[e.index + 1 :]


class ServerSink(Sink):
    """Queue durably, upload in the background; what the server lacks arrives even after a crash
    (the outbox is sent again by the next `agenttrail import --server` to the same URL)."""

    def __init__(self, settings: Settings, server: str, key: str) -> None:
        import hashlib

        from agenttrail.outbox.queue import Outbox
        from agenttrail.outbox.uploader import Uploader

        digest = hashlib.sha256(server.rstrip("/").encode()).hexdigest()[:16]
        self.outbox = Outbox(settings.home / f"import-outbox-{digest}.db")
        self.uploader = Uploader(self.outbox, server, key)
        self.uploader.start(interval_s=0.5)

    def put(self, events: list[Event]) -> tuple[int, int]:
        from agenttrail.store.event_fields import BadEvent, check

        while True:  # what the server would refuse (a 400 that stops the upload) is left out here
            try:
                check(events)
                break
            except BadEvent as e:
                events = _left_out(events, e)
        n = self.outbox.put(events)
        self.uploader.wake()
        return n, len(events) - n

    def abort(self) -> None:
        self.uploader.stop(deadline_s=0)
        self.uploader.close()
        self.outbox.close()

    def close(self, totals: Totals) -> None:
        with err_console.status("uploading…"):
            left = self.uploader.stop(deadline_s=120.0)
        # Stored means stored by the server; already there: held by the outbox, or by the server.
        totals.stored = self.uploader.sent
        totals.duplicates += self.uploader.duplicates
        self.uploader.close()
        self.outbox.close()
        if self.uploader.error is not None:
            raise UserError(f"{self.uploader.error} ({left} events wait in the outbox; run the import again)")
        if left:
            why = f": {self.uploader.last_failure}" if self.uploader.last_failure else ""
            raise UserError(
                f"{left} events are not uploaded yet{why}. They wait in the outbox; run the same import again."
            )


Finder = Callable[..., list[Path]]
Iterate = Callable[..., Iterator[tuple[Path, ImportBatch]]]


def run_import(
    agent: str,
    path: str | None,
    *,
    settings: Settings,
    server: str | None = None,
    key: str | None = None,
    env: dict[str, str] | None = None,
    show_progress: bool = True,
    usage_only: bool = False,
    dry_run: bool = False,
    own_process: bool = False,
    tally: bool = True,
) -> Totals:
    """`own_process`: the process lives for this import only (the command), so its garbage collector may be
    tuned for it (`_tune_collector`). `tally`: a usage-only dry run of Codex may count its calls in the
    native scanner (`TALLY`); False counts them from records."""
    env = dict(os.environ if env is None else env)
    finder: Finder = find_claude_code_files if agent == CLAUDE_CODE else find_codex_files
    iterate: Iterate = iter_claude_code if agent == CLAUDE_CODE else iter_codex
    files = finder(path, env=env)
    totals = Totals(files=len(files))
    if path is not None and not Path(path).expanduser().exists():
        raise UserError(f"{path} does not exist")
    if not files:
        return totals
    if dry_run and server:
        raise UserError("--dry-run stores and uploads nothing: leave out --server")
    if server and not key:
        raise UserError(f"--server needs a virtual key: pass --key sk-at-… or set {KEY_ENV}")
    from agenttrail.pricing import Pricer

    # The models' rates are kept between runs (`pricing._RatesCache`): a run that priced a model before
    # need not import genai-prices, half of a dry run's start-up.
    pricer = Pricer(settings.price_overrides, rates_cache=settings.home / "cache" / "prices.json")
    # Positions are local (the files are): the local store, one set per destination.
    # A usage-only pass keeps its own positions: a full import later still reads the dialogue.
    # A dry run reads every file whole and opens no store: no positions are read or written.
    state = None if dry_run else _state_store(settings, f"{agent}+usage" if usage_only else agent, server)
    sink: Sink = DrySink() if dry_run else ServerSink(settings, server, key or "") if server else LocalSink(settings)
    # Files are folded into one batch until it is worth a transaction: a session split over several
    # files (its subagents, a resumed session) is then one partial view, one set of session markers.
    acc = ImportBatch()
    first_flush = [own_process]
    # The calls, without a record each, where a dry run of Codex rollouts needs only their totals.
    counter = _native.Tally() if tally and TALLY and dry_run and usage_only and agent == CODEX and _native else None
    more: dict[str, Any] = {} if counter is None else {"tally": counter}
    if dry_run:  # no read positions are kept: none are made (a digest and a path made absolute a file)
        more["positions"] = False

    def flush() -> None:
        nonlocal acc
        if dry_run:  # nothing to store: totalled and priced straight from the records
            totals.add_priced(acc, pricer)
            acc = ImportBatch()
            _settle(first_flush)
            return
        from agenttrail.importers.to_events import batch_to_events

        events = batch_to_events(acc, pricer)
        totals.add(acc, events)
        if events:
            new, dup = sink.put(events)
            totals.stored += new
            totals.duplicates += dup
            totals.queued += new
        # Positions only after their events are stored (or durably queued): a crash re-reads, never loses.
        if state is not None:
            state.put_many(acc.file_states)
        acc = ImportBatch()
        _settle(first_flush)

    bar = _Bar(agent, files) if show_progress and err_console.is_terminal else None
    try:
        with bar or contextlib.nullcontext():
            if own_process:
                _tune_collector()
            for f, batch in iterate(path, state=state, env=env, with_events=not usage_only, files=files, **more):
                acc.extend(batch)
                if len(acc.events) + len(acc.calls) >= FLUSH_EVENTS:
                    flush()
                if bar is not None:
                    bar.advance(f, batch)
            flush()
    except BaseException:
        sink.abort()  # what was flushed is stored (or queued) with its positions; the rest is read again
        raise
    if counter is not None and not totals.add_tally(counter, pricer):  # a count past 64 bits: with records
        return run_import(
            agent,
            path,
            settings=settings,
            env=env,
            show_progress=show_progress,
            usage_only=True,
            dry_run=True,
            tally=False,
        )
    sink.close(totals)
    return totals


class _Bar:
    """The progress bar over the files' bytes, with running counts (the totals are counted as batches are
    stored). rich's progress module is imported only when a bar is shown."""

    def __init__(self, agent: str, files: Sequence[Path]) -> None:
        import rich.progress as rp

        columns = (rp.BarColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn(), rp.TimeRemainingColumn())
        self.progress = rp.Progress(
            rp.TextColumn("[bold]{task.description}"),
            *columns,
            rp.TextColumn("{task.fields[note]}"),
            console=err_console,
            transient=False,
        )
        self.task = self.progress.add_task(agent, total=sum(_size(f) for f in files), note="")
        self.sessions: set[tuple[str, str]] = set()
        self.calls = self.unreadable = 0

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def advance(self, f: Path, batch: ImportBatch) -> None:
        self.sessions.update((x.agent, x.agent_session_id) for x in batch.sessions)
        self.calls += len(batch.calls)
        self.unreadable += len(batch.errors)
        note = f"{len(self.sessions)} sessions · {self.calls} calls · {self.unreadable} unreadable"
        self.progress.update(self.task, advance=_size(f), note=note)


def _tune_collector() -> None:
    """The collector, for a process that reads a history and ends: the modules, which live to the end, out
    of its sight (`gc.freeze`), and a young collection every 100,000 allocations, not 700 (the calls a
    batch holds until its flush were walked again and again): ~7% of a dry run's instructions."""
    gc.freeze()
    gc.set_threshold(100_000, 10, 10)


def _settle(first: list[bool]) -> None:
    """After the first flush, what lives to the end (the price tables, the store's caches) leaves the
    collector's sight too. Once only, so cyclic garbage alive at that moment is all that can be kept; and
    only in the command's own process (`own_process`), never in a caller's that goes on."""
    if first[0]:
        first[0] = False
        gc.freeze()


def _state_store(settings: Settings, name: str, server: str | None) -> SqlStateStore:
    from agenttrail.importers.store_state import SqlStateStore, state_source
    from agenttrail.store.database import open_engine

    return SqlStateStore(open_engine(settings.database_url), state_source(name, server))


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _report(agent: str, where: str, totals: Totals, server: str | None, as_json: bool, dry_run: bool = False) -> None:
    if as_json:
        import orjson

        d = totals.as_dict()
        d["dry_run"] = dry_run
        d["errors"] = [{"path": e.path, "line": e.line_no, "reason": e.reason} for e in totals.errors]
        console.print_json(orjson.dumps(d).decode())
        return
    if totals.files == 0:
        console.print(f"no {agent} transcripts under {where}")
        return
    u = totals.usage
    dest = f"uploaded to {server}" if server else "stored"
    console.print(
        f"[bold]{agent}[/]: {totals.files} files ({totals.files_read} read, {totals.files_skipped} unchanged), "
        f"{totals.bytes_read / 1e6:.1f} MB, {totals.lines} lines",
        highlight=False,
        soft_wrap=True,
    )
    outcome = (
        "nothing stored (dry run)" if dry_run else f"{totals.stored} new {dest}, {totals.duplicates} already there"
    )
    console.print(
        f"  {len(totals.sessions)} sessions, {totals.calls} calls, {totals.events} events: {outcome}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  tokens: {u.input_tokens:,} input, {u.cache_read_tokens:,} cache read, "
        f"{u.cache_write_tokens:,} cache write, {u.output_tokens:,} output; cost ${totals.cost_usd:,.4f}",
        highlight=False,
        soft_wrap=True,
    )
    if totals.errors:
        console.print(f"  [yellow]{len(totals.errors)} unreadable lines skipped[/]:", highlight=False)
        for e in totals.errors[:SHOW_ERRORS]:
            console.print(f"    {e.path}:{e.line_no}: {e.reason}", highlight=False, markup=False, soft_wrap=True)
        if len(totals.errors) > SHOW_ERRORS:
            console.print(f"    … and {len(totals.errors) - SHOW_ERRORS} more (--json lists them all)")
    else:
        console.print("  0 unreadable lines")


PATH_ARG = typer.Argument(None, help="A transcript file or folder (default: the agent's own folder).")
SERVER = typer.Option(None, "--server", help="Upload to this agenttrail server instead of the local store.")
KEY = typer.Option(None, "--key", help=f"Virtual key for --server (default: ${KEY_ENV}).")
DB = typer.Option(None, "--db", help=DB_HELP)
CONFIG = typer.Option(None, "--config", help=CONFIG_HELP)
JSON = typer.Option(False, "--json", help="Print the summary as JSON.")
QUIET = typer.Option(False, "--no-progress", help="No progress bar.")
USAGE_ONLY = typer.Option(
    False,
    "--usage-only",
    help="Sessions and calls (tokens, cost) without the dialogue: a fast pass over history.",
)
DRY_RUN = typer.Option(
    False,
    "--dry-run",
    help="Read every file whole and total it; store nothing, write no read positions.",
)


def _command(agent: str, default_where: Callable[[dict[str, str]], str]) -> Callable[..., None]:
    @friendly
    def command(
        path: str | None = PATH_ARG,
        server: str | None = SERVER,
        key: str | None = KEY,
        db: str | None = DB,
        config: str | None = CONFIG,
        as_json: bool = JSON,
        no_progress: bool = QUIET,
        usage_only: bool = USAGE_ONLY,
        dry_run: bool = DRY_RUN,
    ) -> None:
        settings = settings_for(db, config)
        env = dict(os.environ)
        key = key or env.get(KEY_ENV)
        started = time.monotonic()
        try:
            totals = run_import(
                agent,
                path,
                settings=settings,
                server=server,
                key=key,
                env=env,
                show_progress=not (no_progress or as_json),
                usage_only=usage_only,
                dry_run=dry_run,
                own_process=True,
            )
        except OSError as e:  # a folder it may not list, a full disk: one line, not a traceback
            raise UserError(f"import stopped: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}") from None
        except Exception as e:
            # The store went away mid-import; what was stored stays, with its positions. SQLAlchemy is
            # looked up, not imported: a dry run never loads it, and then no error can be one of its.
            sa = sys.modules.get("sqlalchemy.exc")
            if sa is None or not isinstance(e, sa.SQLAlchemyError):
                raise
            reason = getattr(e, "orig", None) or e
            raise UserError(f"import stopped: the store failed: {str(reason).splitlines()[0]}") from None
        where = path or default_where(env)
        _report(agent, where, totals, server, as_json, dry_run)
        if not as_json and totals.files:
            secs = time.monotonic() - started
            console.print(f"  {secs:.1f} s", highlight=False)

    return command


import_app.command(
    "claude-code",
    help="Claude Code transcripts: $CLAUDE_CONFIG_DIR/projects, or ~/.claude/projects (subagents included).",
)(_command(CLAUDE_CODE, lambda env: ", ".join(str(p) for p in claude_projects_dirs(env))))
import_app.command(
    "codex",
    help="Codex rollouts: $CODEX_HOME/sessions, or ~/.codex/sessions.",
)(_command(CODEX, lambda env: str(codex_home(env) / "sessions")))
