"""Budgets: their definitions (org, team, project, engineer, key; day, week, month, total), which ones
cover a call, a call's worst-case cost, and the refusal a person reads when one is spent.

Admission and settlement themselves are the ledger's (`ledger.py`): a budget is a counter in
`budget_spend` whose amounts are nano-dollars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

import orjson
from anyio import to_thread
from sqlalchemy import Connection, Engine, select

from agenttrail.config import ConfigError, Settings
from agenttrail.governance.counters import BUDGET, CounterId
from agenttrail.governance.ledger import Claim
from agenttrail.governance.periods import ADJECTIVE, PERIODS, Window, period_window, zone
from agenttrail.pricing import Pricer
from agenttrail.store.keys import CLEAR_PREFIX_LEN, KEY_PREFIX, KeyInfo, hash_key
from agenttrail.store.org import DirectoryError
from agenttrail.store.tables import budget, budget_spend, engineer, project, team, virtual_key
from agenttrail.usage import Usage

SCOPES = ("org", "team", "project", "engineer", "key")
NANOS = 1_000_000_000
DEFAULT_SOFT_PCTS = (50, 80, 100)


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """`[budgets]` in agenttrail.toml (docs/configuration.md)."""

    timezone: str = "UTC"
    cache_ttl_s: float = 5.0
    default_max_output_tokens: int = 16_384
    lease_pct: float = 1.0
    exact_within_pct: float = 5.0
    flush_interval_s: float = 0.2
    lease_idle_s: float = 2.0
    heartbeat_s: float = 5.0
    dead_after_s: float = 60.0
    on_store_error: str = "refuse"
    synchronous_commit: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetSettings:
        raw = settings.section("budgets")
        out = cls(timezone=settings.budget_timezone)
        values: dict[str, Any] = {}
        for name, kind in (
            ("cache_ttl_s", float),
            ("default_max_output_tokens", int),
            ("lease_pct", float),
            ("exact_within_pct", float),
            ("flush_interval_s", float),
            ("lease_idle_s", float),
            ("heartbeat_s", float),
            ("dead_after_s", float),
        ):
            if name in raw:
                try:
                    values[name] = kind(raw[name])
                except (TypeError, ValueError):
                    raise ConfigError(f"[budgets] {name} must be a number, got {raw[name]!r}") from None
                if values[name] < 0:
                    raise ConfigError(f"[budgets] {name} must not be negative")
        if "synchronous_commit" in raw:
            if not isinstance(raw["synchronous_commit"], bool):
                raise ConfigError("[budgets] synchronous_commit must be true or false")
            values["synchronous_commit"] = raw["synchronous_commit"]
        if "on_store_error" in raw:
            if raw["on_store_error"] not in ("refuse", "admit"):
                raise ConfigError('[budgets] on_store_error must be "refuse" or "admit"')
            values["on_store_error"] = raw["on_store_error"]
        zone(out.timezone)  # fail at start-up, not on the first call
        return _replace(out, values)


def _replace(obj: BudgetSettings, values: Mapping[str, Any]) -> BudgetSettings:
    from dataclasses import replace

    return replace(obj, **values)


@dataclass(frozen=True, slots=True)
class Budget:
    id: int
    scope: str
    scope_id: int | None
    name: str  # the team or project name, engineer email, key name or prefix; "" for the org
    period: str
    limit_nanos: int
    soft_pcts: tuple[int, ...]
    owner: str | None
    created_at: datetime

    @property
    def label(self) -> str:
        """`team "payments" monthly budget`."""
        who = "organisation" if self.scope == "org" else f'{self.scope} "{self.name}"'
        return f"{who} {ADJECTIVE[self.period]} budget"

    @property
    def limit_usd(self) -> Decimal:
        return Decimal(self.limit_nanos) / NANOS


def usd(nanos: int) -> str:
    """$500.12; small amounts keep the digits that tell them apart ($0.050625)."""
    d = Decimal(nanos) / NANOS
    if abs(d) >= 1:
        return f"${d:,.2f}"
    s = f"{d:.6f}".rstrip("0")
    whole, _, frac = s.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def parse_usd(value: str | float | Decimal) -> int:
    try:
        d = Decimal(str(value).strip().lstrip("$"))
    except Exception:
        raise DirectoryError(f"--usd takes an amount in dollars such as 500 or 0.05, got {value!r}") from None
    if not d.is_finite() or d < 0:
        raise DirectoryError(f"--usd must be a non-negative amount, got {value!r}")
    if d > MAX_USD:  # stored in nanodollars in a 64-bit column
        raise DirectoryError(f"--usd must be at most {MAX_USD:,}, got {value!r}")
    return int((d * NANOS).to_integral_value())


MAX_USD = 1_000_000_000


def parse_pcts(value: str | None) -> tuple[int, ...]:
    if value is None or not value.strip():
        return DEFAULT_SOFT_PCTS
    out = []
    for part in value.split(","):
        part = part.strip().rstrip("%")
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 1000:
            raise DirectoryError(f"--soft-pct takes percentages such as 50,80,100; {part!r} is not one")
        out.append(int(part))
    return tuple(sorted(set(out)))


def refusal_message(b: Budget, window: Window, spent: int, reserved: int) -> str:
    msg = f"{b.label} is spent: {usd(spent)} of {usd(b.limit_nanos)}"
    if spent + reserved < b.limit_nanos:
        # The figures are read after the refusal: the calls that held the rest when this one was
        # checked may have finished since (they quoted "$0.00 more is held").
        msg += ", and calls in progress held the rest when this call was checked"
    elif spent < b.limit_nanos:
        msg += f", and {usd(reserved)} more is held by calls in progress"
    if window.end is None:
        msg += "; it is a lifetime budget and does not reset"
    else:
        msg += f"; resets {window.describe_end()}"
    if b.owner:
        msg += f". Ask {b.owner} to raise it"
    return msg


# -- the store: what `agenttrail budget` reads and writes ------------------------------------------------


def resolve_scope(conn: Connection, scope: str, target: str | None) -> tuple[int | None, str]:
    """The scope's id and display name, from what a person types (a name, an email, a key)."""
    if scope == "org":
        return None, ""
    if not target:
        raise DirectoryError(f"--{scope} needs a value")
    if scope == "team":
        row = conn.execute(select(team.c.id, team.c.name).where(team.c.name == target)).first()
    elif scope == "project":
        row = conn.execute(select(project.c.id, project.c.name).where(project.c.name == target)).first()
    elif scope == "engineer":
        row = conn.execute(select(engineer.c.id, engineer.c.email).where(engineer.c.email == target.lower())).first()
    elif scope == "key":
        if target.startswith(KEY_PREFIX) and len(target) > CLEAR_PREFIX_LEN:
            q = select(virtual_key.c.id, virtual_key.c.prefix).where(virtual_key.c.key_hash == hash_key(target))
        else:
            q = select(virtual_key.c.id, virtual_key.c.prefix).where(virtual_key.c.prefix == target.rstrip("…."))
        rows = conn.execute(q).all()
        if len(rows) > 1:
            raise DirectoryError(f"{len(rows)} keys share the prefix {target!r}; give the whole key")
        row = rows[0] if rows else None
    else:
        raise DirectoryError(f"unknown budget scope {scope!r}; use one of {', '.join(SCOPES)}")
    if row is None:
        hint = {
            "team": "`agenttrail team add NAME`",
            "project": "`agenttrail project add NAME --team T`",
            "engineer": "`agenttrail engineer add EMAIL --team T`",
            "key": "`agenttrail key list` for prefixes",
        }[scope]
        raise DirectoryError(f'no {scope} "{target}"; see {hint}')
    return int(row[0]), str(row[1])


def set_budget(
    engine: Engine,
    *,
    scope: str,
    target: str | None,
    limit_nanos: int,
    period: str,
    soft_pcts: tuple[int, ...] = DEFAULT_SOFT_PCTS,
    owner: str | None = None,
    now: datetime,
) -> Budget:
    """Create the budget for (scope, period), or change its limit, thresholds and owner."""
    if period not in PERIODS:
        raise DirectoryError(f"--period must be one of {', '.join(PERIODS)}, got {period!r}")
    with engine.begin() as conn:
        scope_id, _ = resolve_scope(conn, scope, target)
        cond = (budget.c.scope == scope) & (budget.c.period == period)
        cond &= budget.c.scope_id.is_(None) if scope_id is None else budget.c.scope_id == scope_id
        existing = conn.execute(select(budget.c.id).where(cond)).first()
        values = {"limit_nanos": limit_nanos, "soft_pcts": ",".join(map(str, soft_pcts)), "owner": owner}
        if existing is None:
            bid = conn.execute(
                budget.insert().values(scope=scope, scope_id=scope_id, period=period, created_at=now, **values)
            ).inserted_primary_key[0]  # type: ignore[index]
        else:
            bid = existing[0]
            conn.execute(budget.update().where(budget.c.id == bid).values(**values))
        return next(b for b in _load(conn) if b.id == bid)


def list_budgets(engine: Engine) -> list[Budget]:
    with engine.connect() as conn:
        return _load(conn)


def remove_budget(engine: Engine, budget_id: int) -> Budget:
    with engine.begin() as conn:
        found = [b for b in _load(conn) if b.id == budget_id]
        if not found:
            raise DirectoryError(f"no budget {budget_id}; `agenttrail budget list` shows their ids")
        conn.execute(budget_spend.delete().where(budget_spend.c.budget_id == budget_id))
        conn.execute(budget.delete().where(budget.c.id == budget_id))
        return found[0]


def spend_of(engine: Engine, budgets: list[Budget], now: datetime, tz: tzinfo) -> dict[int, tuple[Window, int, int]]:
    """Each budget's current period with its spent and reserved nano-dollars."""
    out: dict[int, tuple[Window, int, int]] = {}
    with engine.connect() as conn:
        for b in budgets:
            w = period_window(b.period, now, tz)
            row = conn.execute(
                select(budget_spend.c.spent_nanos, budget_spend.c.reserved_nanos).where(
                    (budget_spend.c.budget_id == b.id) & (budget_spend.c.period_start == w.start)
                )
            ).first()
            out[b.id] = (w, int(row[0]) if row else 0, int(row[1]) if row else 0)
    return out


def _load(conn: Connection) -> list[Budget]:
    names: dict[str, dict[int, str]] = {
        "team": {r[0]: r[1] for r in conn.execute(select(team.c.id, team.c.name))},
        "project": {r[0]: r[1] for r in conn.execute(select(project.c.id, project.c.name))},
        "engineer": {r[0]: r[1] for r in conn.execute(select(engineer.c.id, engineer.c.email))},
    }
    rows = conn.execute(select(budget).order_by(budget.c.id)).all()
    key_ids = [r.scope_id for r in rows if r.scope == "key" and r.scope_id is not None]
    if key_ids:
        names["key"] = {
            r.id: r.name or f"{r.prefix}…"
            for r in conn.execute(
                select(virtual_key.c.id, virtual_key.c.name, virtual_key.c.prefix).where(virtual_key.c.id.in_(key_ids))
            )
        }
    out = []
    for r in rows:
        name = "" if r.scope == "org" else names.get(r.scope, {}).get(r.scope_id, f"#{r.scope_id}")
        pcts = tuple(int(p) for p in str(r.soft_pcts or "").split(",") if p.strip().isdigit())
        out.append(Budget(r.id, r.scope, r.scope_id, name, r.period, int(r.limit_nanos), pcts, r.owner, r.created_at))
    return out


# -- the gateway's view: which budgets cover a key ------------------------------------------------------


class BudgetBook:
    """Every budget, held in memory and re-read every `ttl_s` (budgets are few; calls are many), so
    finding a call's budgets costs dictionary lookups. A new or changed budget applies within `ttl_s`
    on every process."""

    def __init__(self, engine: Engine, ttl_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._ttl = ttl_s
        self._mono = monotonic
        self._expires = -math.inf
        self._by_scope: dict[tuple[str, int | None], list[Budget]] = {}
        self._by_id: dict[int, Budget] = {}
        self._children: dict[int, int] = {}  # session key id -> the key it was made from
        self.on_change: list[Callable[[Budget | None, Budget | None], None]] = []

    def invalidate(self) -> None:
        self._expires = -math.inf

    def get(self, budget_id: int) -> Budget | None:
        return self._by_id.get(budget_id)

    def all(self) -> list[Budget]:
        return list(self._by_id.values())

    async def refresh_if_stale(self) -> None:
        if self._mono() < self._expires:
            return
        budgets, children = await to_thread.run_sync(self._read)
        self._expires = self._mono() + self._ttl
        old = self._by_id
        self._by_id = {b.id: b for b in budgets}
        by_scope: dict[tuple[str, int | None], list[Budget]] = {}
        for b in budgets:
            by_scope.setdefault((b.scope, b.scope_id), []).append(b)
        self._by_scope = by_scope
        self._children = children
        for bid, b in old.items():
            new = self._by_id.get(bid)
            if new is None or new.created_at != b.created_at:
                for cb in self.on_change:
                    cb(b, new)

    def _read(self) -> tuple[list[Budget], dict[int, int]]:
        with self._engine.connect() as conn:
            budgets = _load(conn)
            key_ids = [b.scope_id for b in budgets if b.scope == "key" and b.scope_id is not None]
            children: dict[int, int] = {}
            if key_ids:
                q = select(virtual_key.c.id, virtual_key.c.parent_key_id).where(
                    virtual_key.c.parent_key_id.in_(key_ids)
                )
                children = {int(r[0]): int(r[1]) for r in conn.execute(q)}
        return budgets, children

    def covering(self, key: KeyInfo) -> list[Budget]:
        """Every budget that applies to a call made with `key`: the org's, its team's, project's,
        engineer's, the key's own (and, for a session key, the key it was made from)."""
        get = self._by_scope.get
        out: list[Budget] = []
        out += get(("org", None), [])
        out += get(("team", key.team_id), [])
        if key.project_id is not None:
            out += get(("project", key.project_id), [])
        if key.engineer_id is not None:
            out += get(("engineer", key.engineer_id), [])
        out += get(("key", key.id), [])
        parent = self._children.get(key.id)
        if parent is not None:
            out += get(("key", parent), [])
        return out


def budget_cid(b: Budget, window: Window) -> CounterId:
    return CounterId(BUDGET, str(b.id), window.start)


def budget_claim(b: Budget, window: Window, amount: int, s: BudgetSettings) -> Claim:
    return Claim(
        budget_cid(b, window),
        limit=b.limit_nanos,
        amount=amount,
        lease=int(b.limit_nanos * s.lease_pct / 100),
        exact_within=int(b.limit_nanos * s.exact_within_pct / 100),
    )


# -- a call's worst case -------------------------------------------------------------------------------


def max_output_tokens(endpoint: str, body: Mapping[str, Any], default: int) -> int:
    """What the request allows the model to write: max_tokens (Anthropic), max_completion_tokens or
    max_tokens times n (Chat Completions), max_output_tokens (Responses); embeddings write nothing."""
    if endpoint == "embeddings":
        return 0
    names = {
        "messages": ("max_tokens",),
        "chat": ("max_completion_tokens", "max_tokens"),
        "responses": ("max_output_tokens",),
    }.get(endpoint, ("max_tokens",))
    limit = default
    for name in names:
        v = body.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            limit = v
            break
    n = body.get("n") if endpoint == "chat" else 1
    allowance = limit * (n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1)
    # No model writes more; an absurd allowance (max_tokens 2**63-1) priced in nano-dollars overflowed
    # the counters' 64-bit columns and was answered as a database outage.
    return min(allowance, MAX_OUTPUT_ALLOWANCE)


MAX_OUTPUT_ALLOWANCE = 100_000_000  # tokens, choices included


def input_tokens_estimate(raw_size: int) -> int:
    # About three bytes of request JSON per token errs high for prose and code alike (tokenisers
    # average near four characters per token, and the JSON around the text is bytes without tokens).
    return math.ceil(raw_size / 3)


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a request may use at most, as far as can be known before it runs."""

    tokens_in: int
    tokens_out: int
    writes_cache: bool  # a prompt that writes the provider's cache is priced at the cache-write rate

    @classmethod
    def of(cls, endpoint: str, body: Mapping[str, Any], default_max_out: int) -> Estimate:
        raw = orjson.dumps(body)
        return cls(
            input_tokens_estimate(len(raw)),
            max_output_tokens(endpoint, body, default_max_out),
            b'"cache_control"' in raw,
        )

    def cost(self, pricer: Pricer, provider: str, model: str | None) -> int:
        """Nano-dollars at `model`'s prices (0 for a model without a known price)."""
        if not model:
            return 0
        if self.writes_cache:
            usage = Usage(cache_write_1h_tokens=self.tokens_in, output_tokens=self.tokens_out)
        else:
            usage = Usage(input_tokens=self.tokens_in, output_tokens=self.tokens_out)
        return math.ceil(pricer.price(provider, model, usage).cost_usd * NANOS)


def worst_case(
    pricer: Pricer, provider: str, model: str | None, endpoint: str, body: Mapping[str, Any], default_max_out: int
) -> tuple[int, int, int]:
    """(nano-dollars, input tokens, output tokens) a call may cost at most."""
    est = Estimate.of(endpoint, body, default_max_out)
    return est.cost(pricer, provider, model), est.tokens_in, est.tokens_out


def covering_windows(budgets: list[Budget], now: datetime, tz: tzinfo) -> list[tuple[Budget, Window]]:
    return [(b, period_window(b.period, now, tz)) for b in budgets]
