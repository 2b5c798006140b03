"""FinOps FOCUS 1.2 cost and usage export: one row per UTC day x team x project x model.

Read from `daily_spend` (kept exact by triggers). Token usage is the consumed and priced quantity
(`Tokens`), with the per-class split (input, cache read, cache write, output) in `x_` columns;
the SaaS pricing columns FOCUS 1.2 added (PricingCurrency and the PricingCurrency* prices) carry
the same USD figures, since providers price and bill LLM tokens in USD. agenttrail's dimensions
(team, project, model, provider, calls) are `x_` columns too, and team and project are also the
SubAccount and Tags.

Costs: agenttrail records one cost per call, with organisation price overrides (negotiated rates)
already applied, so Billed, Effective, Contracted and List cost are that same cost.

Compatibility: the only published validator (focus-validator 1.0.0) checks the 1.0 rules and
spells three columns by their 0.5 names (Provider, Publisher, InvoiceIssuer). Those three are
written too, with the same values as ProviderName, PublisherName and InvoiceIssuerName, so the file
passes it; `compat=False` leaves them out for a strictly 1.2 file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import orjson
from sqlalchemy import Engine, text

from agenttrail.reports.base import Filters

FOCUS_VERSION = "1.2"
CURRENCY = "USD"
PROVIDERS = {"anthropic": "Anthropic", "openai": "OpenAI", "google": "Google", "mistral": "Mistral"}

COLUMNS = (
    # FOCUS 1.2 columns, in the specification's (alphabetical) order.
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
)
COMPAT_COLUMNS = ("Provider", "Publisher", "InvoiceIssuer")  # focus-validator 1.0.0's spellings
CUSTOM_COLUMNS = (
    "x_Team",
    "x_Project",
    "x_Provider",
    "x_Model",
    "x_Calls",
    "x_InputTokens",
    "x_CacheReadTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
)


def decimal_text(v: float | int | Decimal) -> str:
    """A decimal as text that always reads as a decimal ("1000.0", never "1000" or "1e-07")."""
    d = v if isinstance(v, Decimal) else Decimal(repr(float(v)))
    s = format(d.normalize(), "f") if d != 0 else "0"
    return s if "." in s else s + ".0"


def _utc(d: date | datetime) -> str:
    return f"{d:%Y-%m-%d}T00:00:00Z" if not isinstance(d, datetime) else d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _month_bounds(d: date) -> tuple[date, date]:
    start = d.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@dataclass(slots=True)
class DayRow:
    day: str
    team: str | None
    project: str | None
    provider: str
    model: str | None
    calls: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: float

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.output_tokens


def day_rows(engine: Engine, f: Filters, *, batch: int = 5000) -> Iterator[DayRow]:
    parts: list[str] = ["1=1"]
    params: dict[str, Any] = {}
    if f.since is not None:
        parts.append("day >= :since_day")
        params["since_day"] = f.since.date().isoformat()
    if f.until is not None:
        # `until` is exclusive: a day is in when it starts before it.
        parts.append("day < :until_day")
        until = f.until.date() + (timedelta(days=1) if f.until.time() != datetime.min.time() else timedelta(0))
        params["until_day"] = until.isoformat()
    if f.team is not None:
        parts.append("team = :team")
        params["team"] = f.team
    sql = f"""
SELECT day, team, project, provider, model, SUM(calls), SUM(input_tokens), SUM(cache_read_tokens),
       SUM(cache_write_tokens), SUM(output_tokens), SUM(cost_usd)
FROM daily_spend WHERE {" AND ".join(parts)}
GROUP BY day, team, project, provider, model
ORDER BY day, team, project, provider, model"""
    with engine.connect().execution_options(stream_results=True, yield_per=batch) as conn:
        for r in conn.execute(text(sql), params):
            yield DayRow(
                str(r[0]),
                r[1],
                r[2],
                str(r[3]),
                r[4],
                int(r[5] or 0),
                int(r[6] or 0),
                int(r[7] or 0),
                int(r[8] or 0),
                int(r[9] or 0),
                float(r[10] or 0.0),
            )


def focus_record(r: DayRow) -> dict[str, str | None]:
    day = date.fromisoformat(r.day)
    bp_start, bp_end = _month_bounds(day)
    provider = PROVIDERS.get(r.provider, r.provider.title())
    model = r.model or "unknown"
    cost = Decimal(repr(r.cost_usd))
    if r.tokens > 0:
        unit, quantity = "Tokens", Decimal(r.tokens)
    else:
        # Calls that report no tokens (errors, cached answers) are priced per request.
        unit, quantity = "Requests", Decimal(r.calls)
    unit_price = (cost / quantity) if quantity else Decimal(0)
    cost_s, price_s = decimal_text(cost), decimal_text(unit_price)
    scope = "/".join(x for x in (r.team, r.project) if x) or "unattributed"
    tags = {k: v for k, v in (("agenttrail/team", r.team), ("agenttrail/project", r.project)) if v}
    rec: dict[str, str | None] = dict.fromkeys(COLUMNS)
    rec.update(
        BilledCost=cost_s,
        BillingAccountId=r.provider,
        BillingAccountName=f"{provider} account",
        BillingAccountType="Organization",
        BillingCurrency=CURRENCY,
        BillingPeriodEnd=_utc(bp_end),
        BillingPeriodStart=_utc(bp_start),
        ChargeCategory="Usage",
        ChargeDescription=f"{model} tokens for {scope}",
        ChargeFrequency="Usage-Based",
        ChargePeriodEnd=_utc(day + timedelta(days=1)),
        ChargePeriodStart=_utc(day),
        ConsumedQuantity=decimal_text(quantity),
        ConsumedUnit=unit,
        ContractedCost=cost_s,
        ContractedUnitPrice=price_s,
        EffectiveCost=cost_s,
        InvoiceIssuerName=provider,
        ListCost=cost_s,
        ListUnitPrice=price_s,
        PricingCategory="Standard",
        PricingCurrency=CURRENCY,
        PricingCurrencyContractedUnitPrice=price_s,
        PricingCurrencyEffectiveCost=cost_s,
        PricingCurrencyListUnitPrice=price_s,
        PricingQuantity=decimal_text(quantity),
        PricingUnit=unit,
        ProviderName=provider,
        PublisherName=provider,
        ResourceId=f"{r.provider}/{model}",
        ResourceName=model,
        ResourceType="Model",
        ServiceCategory="AI and Machine Learning",
        ServiceName=f"{provider} API",
        ServiceSubcategory="Generative AI",
        SkuId=model,
        SkuMeter=unit,
        SkuPriceId=f"{r.provider}/{model}/{unit.lower()}",
        SubAccountId=f"team:{r.team}" if r.team else None,
        SubAccountName=r.team,
        SubAccountType="Team" if r.team else None,
        Tags=orjson.dumps(tags).decode(),
    )
    rec.update(Provider=provider, Publisher=provider, InvoiceIssuer=provider)
    rec.update(
        x_Team=r.team,
        x_Project=r.project,
        x_Provider=r.provider,
        x_Model=r.model,
        x_Calls=str(r.calls),
        x_InputTokens=str(r.input_tokens),
        x_CacheReadTokens=str(r.cache_read_tokens),
        x_CacheWriteTokens=str(r.cache_write_tokens),
        x_OutputTokens=str(r.output_tokens),
    )
    return rec


def columns(compat: bool = True) -> list[str]:
    return [*COLUMNS, *(COMPAT_COLUMNS if compat else ()), *CUSTOM_COLUMNS]


def write_focus(engine: Engine, f: Filters, out: TextIO, *, compat: bool = True) -> int:
    cols = columns(compat)
    w = csv.DictWriter(out, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    n = 0
    for r in day_rows(engine, f):
        rec = focus_record(r)
        w.writerow({c: "" if rec.get(c) is None else rec[c] for c in cols})
        n += 1
    return n
