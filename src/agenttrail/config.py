"""Settings from flags, `AGENTTRAIL_*` environment variables and an optional `agenttrail.toml`.

Precedence: explicit flags > environment > config file > defaults. The config file is the one named
by `--config`, else `$AGENTTRAIL_CONFIG`, else `$AGENTTRAIL_HOME/agenttrail.toml`, else
`./agenttrail.toml` when present. See docs/configuration.md for every key.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


PRICE_CLASSES = ("input", "cache_read", "cache_write", "cache_write_1h", "output")


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A negotiated rate for one model: USD per million tokens, per token class. Classes left out
    keep the public price."""

    model: str
    per_mtok: Mapping[str, Decimal]
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    api_key: str | None


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    anthropic: Upstream
    openai: Upstream
    config_file: Path | None = None
    price_overrides: tuple[PriceOverride, ...] = ()
    max_body_bytes: int = 32 * 1024 * 1024
    upstream_connect_timeout_s: float = 10.0
    upstream_read_timeout_s: float = 600.0
    record_batch_size: int = 500
    record_flush_interval_s: float = 0.5
    budget_timezone: str = "UTC"
    raw: Mapping[str, Any] = field(default_factory=dict)

    def upstream(self, provider: str) -> Upstream:
        if provider == "anthropic":
            return self.anthropic
        if provider == "openai":
            return self.openai
        raise KeyError(provider)

    def section(self, name: str) -> Mapping[str, Any]:
        """A raw table of the config file, for features that own their own settings."""
        value = self.raw.get(name, {})
        return value if isinstance(value, Mapping) else {}


def default_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("AGENTTRAIL_HOME") or Path.home() / ".agenttrail").expanduser()


def _find_config(path: str | os.PathLike[str] | None, env: Mapping[str, str], home: Path) -> Path | None:
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} {'is a directory' if p.is_dir() else 'does not exist'}")
        return p
    if env.get("AGENTTRAIL_CONFIG"):
        p = Path(env["AGENTTRAIL_CONFIG"]).expanduser()
        if not p.is_file():
            raise ConfigError(f"AGENTTRAIL_CONFIG names {p}, which does not exist")
        return p
    for candidate in (home / "agenttrail.toml", Path.cwd() / "agenttrail.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {p}: {e.strerror}") from None


# What agenttrail.toml may hold (docs/configuration.md). A misspelt table or setting used to be read
# as if it were not there: `[upstream.anthropic]` sent calls to the real provider, `[limit.key]` left
# keys unlimited, `[cache] enable = true` kept the cache off, and the server started without a word.
# Tables whose keys are names (prices, aliases, fallbacks, overrides) and the tables other parts
# check themselves ([limits], [retention], [sessions], [github]) are named here but not looked into.
KNOWN_SETTINGS: Mapping[str, frozenset[str] | None] = {
    "home": None,
    "database_url": None,
    "upstreams": frozenset({"anthropic", "openai"}),
    "upstreams.anthropic": frozenset({"base_url", "api_key"}),
    "upstreams.openai": frozenset({"base_url", "api_key"}),
    "gateway": frozenset({"max_body_mb", "connect_timeout_s", "read_timeout_s"}),
    "budgets": frozenset(
        {
            "timezone",
            "default_max_output_tokens",
            "lease_pct",
            "exact_within_pct",
            "flush_interval_s",
            "lease_idle_s",
            "cache_ttl_s",
            "heartbeat_s",
            "dead_after_s",
            "synchronous_commit",
            "on_store_error",
        }
    ),
    "alerts": frozenset({"webhooks", "max_attempts", "backoff_s", "timeout_s", "redeliver_after_s"}),
    "limits": None,
    "routing": frozenset({"aliases", "fallbacks", "max_attempts", "fallback_on", "downgrade"}),
    "routing.downgrade": frozenset({"at_pct", "models"}),
    "cache": frozenset({"enabled", "teams", "ttl_s", "max_entry_bytes", "memory_entries"}),
    "prices": None,
    "retention": None,
    "sessions": None,
    "github": None,
}


def _did_you_mean(name: str, known: Any, shape: str = "{}") -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {shape.format(close[0])}"
    return f"; known: {', '.join(shape.format(k) for k in sorted(known))}"


def _check_names(raw: Mapping[str, Any], source: Path | None) -> None:
    """A ConfigError naming the first table or setting agenttrail does not know, and the likely one."""
    top = {k for k in KNOWN_SETTINGS if "." not in k}
    for name, value in raw.items():
        if name in top:
            continue
        if isinstance(value, Mapping):
            tables = top - {"home", "database_url"}
            raise ConfigError(f"{source}: unknown table [{name}]{_did_you_mean(name, tables, '[{}]')}")
        raise ConfigError(f"{source}: unknown setting {name}{_did_you_mean(name, top)}")
    for table, known in KNOWN_SETTINGS.items():
        if known is None:
            continue
        section: Any = raw
        for part in table.split("."):
            section = section.get(part) if isinstance(section, Mapping) else None
        if not isinstance(section, Mapping):
            continue
        for name in section:
            if name not in known:
                raise ConfigError(f"{source}: [{table}] has no setting {name}{_did_you_mean(name, known)}")


def _price_overrides(raw: Any, source: Path | None) -> tuple[PriceOverride, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[prices] in {source} must be a table of models")
    out = []
    for model, rates in raw.items():
        if not isinstance(rates, Mapping):
            raise ConfigError(f'[prices."{model}"] in {source} must be a table, e.g. input = 2.5')
        per: dict[str, Decimal] = {}
        provider = rates.get("provider")
        for cls, value in rates.items():
            if cls == "provider":
                continue
            if cls not in PRICE_CLASSES:
                raise ConfigError(
                    f'[prices."{model}"] in {source}: unknown token class {cls!r}; '
                    f"use {', '.join(PRICE_CLASSES)} (USD per million tokens)"
                )
            try:
                d = Decimal(str(value))
            except InvalidOperation:
                d = Decimal("NaN")
            if not d.is_finite() or isinstance(value, bool):
                raise ConfigError(f'[prices."{model}"].{cls} in {source} must be a number')
            if d < 0:
                raise ConfigError(f'[prices."{model}"].{cls} in {source} must not be negative')
            per[cls] = d
        out.append(PriceOverride(model=model, per_mtok=per, provider=provider))
    return tuple(out)


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    db: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    home = default_home(env)
    cfg_path = _find_config(config_file, env, home)
    raw: dict[str, Any] = _read_toml(cfg_path) if cfg_path else {}
    _check_names(raw, cfg_path)
    if "home" in raw and not env.get("AGENTTRAIL_HOME"):
        home = Path(str(raw["home"])).expanduser()
    ups = raw.get("upstreams", {}) if isinstance(raw.get("upstreams"), Mapping) else {}

    def upstream(name: str, default_url: str, key_env: str) -> Upstream:
        table = ups.get(name, {}) if isinstance(ups.get(name), Mapping) else {}
        url = env.get(f"AGENTTRAIL_{name.upper()}_BASE_URL") or table.get("base_url") or default_url
        key = env.get(key_env) or table.get("api_key")
        if not str(url).startswith(("http://", "https://")):
            raise ConfigError(f"the {name} upstream base URL must start with http:// or https://, got {url!r}")
        return Upstream(name=name, base_url=str(url).rstrip("/"), api_key=key)

    database_url = db or env.get("AGENTTRAIL_DATABASE_URL") or raw.get("database_url")
    if not database_url:
        database_url = f"sqlite:///{home / 'agenttrail.db'}"
    gw = raw.get("gateway", {}) if isinstance(raw.get("gateway"), Mapping) else {}
    budgets = raw.get("budgets", {}) if isinstance(raw.get("budgets"), Mapping) else {}
    settings = Settings(
        home=home,
        database_url=str(database_url),
        anthropic=upstream("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        openai=upstream("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        config_file=cfg_path,
        price_overrides=_price_overrides(raw.get("prices"), cfg_path),
        raw=raw,
        budget_timezone=str(env.get("AGENTTRAIL_BUDGET_TIMEZONE") or budgets.get("timezone") or "UTC"),
    )
    _check_zone(settings.budget_timezone)
    if "max_body_mb" in gw:
        mb = positive_setting(gw["max_body_mb"], f"[gateway] max_body_mb in {cfg_path}")
        settings = replace(settings, max_body_bytes=int(mb * 1024 * 1024))
    if env.get("AGENTTRAIL_MAX_BODY_BYTES"):
        n = positive_setting(env["AGENTTRAIL_MAX_BODY_BYTES"], "AGENTTRAIL_MAX_BODY_BYTES")
        settings = replace(settings, max_body_bytes=int(n))
    for key, attr in (
        ("connect_timeout_s", "upstream_connect_timeout_s"),
        ("read_timeout_s", "upstream_read_timeout_s"),
    ):
        env_key = f"AGENTTRAIL_UPSTREAM_{key.upper()}"
        value = env.get(env_key) or gw.get(key)
        if value is not None:
            where = env_key if env.get(env_key) else f"[gateway] {key} in {cfg_path}"
            changes: dict[str, Any] = {attr: positive_setting(value, where)}
            settings = replace(settings, **changes)
    return settings


def positive_setting(value: Any, where: str) -> float:
    """A setting that must be a positive number, or a ConfigError naming where it was set."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        n = math.nan
    if not math.isfinite(n) or n <= 0 or isinstance(value, bool):
        raise ConfigError(f"{where} must be a positive number, got {value!r}")
    return n


def _check_zone(name: str) -> None:
    from agenttrail.governance.periods import PeriodError, zone

    try:
        zone(name)
    except PeriodError as e:
        raise ConfigError(f"budget time zone: {e}") from None
