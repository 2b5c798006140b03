"""The FOCUS 1.2 rules an export must keep, checked from the specification's text.

focus-validator 1.0.0 knows only the 1.0 rules; this checks the 1.2 requirements that apply to a
usage-only, USD, no-commitment dataset like agenttrail's (column presence and naming, value formats,
enumerations, period nesting, cost = unit price * quantity, the 1.2 PricingCurrency columns).
Returns every violation found, as text, so a test can show them all at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation

from agenttrail.exports.focus import COLUMNS

MANDATORY = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
NOT_NULL = (
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
DECIMALS = (
    "BilledCost",
    "ConsumedQuantity",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "ListCost",
    "ListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
)
DATETIMES = ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")
ENUMS = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {"Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "CommitmentDiscountCategory": {"Spend", "Usage"},
    "CommitmentDiscountStatus": {"Used", "Unused"},
    "CapacityReservationStatus": {"Used", "Unused"},
    "ServiceCategory": {
        "AI and Machine Learning",
        "Analytics",
        "Business Applications",
        "Compute",
        "Databases",
        "Developer Tools",
        "Multicloud",
        "Identity",
        "Integration",
        "Internet of Things",
        "Management and Governance",
        "Media",
        "Migration",
        "Mobile",
        "Networking",
        "Security",
        "Storage",
        "Web",
        "Other",
    },
}
AI_SUBCATEGORIES = {
    "AI Platforms",
    "Bots",
    "Generative AI",
    "Machine Learning",
    "Natural Language Processing",
    "Other (AI and Machine Learning)",
}
_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_UNIT = re.compile(r"^(\d+ )?[A-Z][A-Za-z-]*( [A-Za-z-]+)*(/[A-Z][a-z]+)?$")


def _dec(v: str) -> Decimal | None:
    try:
        d = Decimal(v)
    except InvalidOperation:
        return None
    return d if d.is_finite() and "e" not in v.lower() else None


def _close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= max(Decimal("1e-9"), abs(b) * Decimal("1e-9"))


def check_focus_1_2(
    header: Sequence[str], rows: Iterable[Mapping[str, str]], *, compat: Iterable[str] = ()
) -> list[str]:
    problems: list[str] = []
    known, allowed = set(COLUMNS), set(compat)
    for col in MANDATORY:
        if col not in header:
            problems.append(f"mandatory column {col} is missing")
    for col in header:
        if col.startswith("x_"):
            continue
        if col not in known and col not in allowed:
            problems.append(f"column {col} is neither a FOCUS 1.2 column nor prefixed x_")
        if not _PASCAL.match(col):
            problems.append(f"column {col} is not PascalCase alphanumeric")
    if len(set(header)) != len(header):
        problems.append("a column appears twice")

    for i, row in enumerate(rows, start=2):  # line numbers of a CSV with a header

        def bad(msg: str, line: int = i) -> None:
            problems.append(f"line {line}: {msg}")

        val = {k: (v if v != "" else None) for k, v in row.items()}
        for col in NOT_NULL:
            if val.get(col) is None:
                bad(f"{col} must not be null")
        for col in DECIMALS:
            v = val.get(col)
            if v is not None and _dec(v) is None:
                bad(f"{col} {v!r} is not a decimal")
        times: dict[str, datetime] = {}
        for col in DATETIMES:
            v = val.get(col)
            if v is not None:
                if not _UTC.match(v):
                    bad(f"{col} {v!r} is not an ISO 8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)")
                else:
                    times[col] = datetime.fromisoformat(v.replace("Z", "+00:00"))
        for col in ("BillingCurrency", "PricingCurrency"):
            v = val.get(col)
            if v is not None and not _CURRENCY.match(v):
                bad(f"{col} {v!r} is not an ISO 4217 code")
        for col, values in ENUMS.items():
            v = val.get(col)
            if v is not None and v not in values:
                bad(f"{col} {v!r} is not one of the allowed values")
        if len(times) == 4:
            if not times["ChargePeriodStart"] < times["ChargePeriodEnd"]:
                bad("ChargePeriodStart must be before ChargePeriodEnd")
            if not times["BillingPeriodStart"] < times["BillingPeriodEnd"]:
                bad("BillingPeriodStart must be before BillingPeriodEnd")
            if not times["BillingPeriodStart"] <= times["ChargePeriodStart"] < times["BillingPeriodEnd"]:
                bad("the charge period must start within the billing period")
        category, klass = val.get("ChargeCategory"), val.get("ChargeClass")
        usage = category in ("Usage", "Purchase") and klass != "Correction"
        if category == "Purchase" and val.get("ChargeFrequency") == "Usage-Based":
            bad("a Purchase cannot be Usage-Based")
        if usage:
            for col in ("PricingQuantity", "PricingUnit", "PricingCategory", "SkuPriceId", "ListUnitPrice"):
                if col in row and val.get(col) is None:
                    bad(f"{col} must not be null for a {category} charge")
        if category == "Usage" and klass != "Correction":
            for col in ("ConsumedQuantity", "ConsumedUnit"):
                if col in row and val.get(col) is None:
                    bad(f"{col} must not be null for usage")
        for unit_col in ("PricingUnit", "ConsumedUnit", "SkuMeter"):
            v = val.get(unit_col)
            if v is not None and not _UNIT.match(v):
                bad(f"{unit_col} {v!r} does not follow the unit format")
        qty = _dec(val.get("PricingQuantity") or "x")
        for cost_col, price_col in (
            ("ListCost", "ListUnitPrice"),
            ("ContractedCost", "ContractedUnitPrice"),
            ("PricingCurrencyEffectiveCost", None),
        ):
            cost = _dec(val.get(cost_col) or "x")
            price = _dec(val.get(price_col) or "x") if price_col else None
            if (
                price_col
                and cost is not None
                and price is not None
                and qty is not None
                and not _close(price * qty, cost)
            ):
                bad(f"{cost_col} {cost} is not {price_col} {price} * PricingQuantity {qty}")
        if val.get("PricingCurrency") is not None and val.get("PricingCurrency") == val.get("BillingCurrency"):
            # Same currency: the PricingCurrency figures are the billing-currency ones (1.2).
            for pc_col, col in (
                ("PricingCurrencyEffectiveCost", "EffectiveCost"),
                ("PricingCurrencyListUnitPrice", "ListUnitPrice"),
                ("PricingCurrencyContractedUnitPrice", "ContractedUnitPrice"),
            ):
                a, b = _dec(val.get(pc_col) or "x"), _dec(val.get(col) or "x")
                if a is not None and b is not None and not _close(a, b):
                    bad(f"{pc_col} must equal {col} when PricingCurrency is the billing currency")
        if val.get("ServiceCategory") == "AI and Machine Learning":
            sub = val.get("ServiceSubcategory")
            if sub is not None and sub not in AI_SUBCATEGORIES:
                bad(f"ServiceSubcategory {sub!r} does not belong to AI and Machine Learning")
        if (val.get("SubAccountId") is None) != (val.get("SubAccountName") is None):
            bad("SubAccountId and SubAccountName must both be null or both be set")
        if val.get("SubAccountId") is not None and "SubAccountType" in row and val.get("SubAccountType") is None:
            bad("SubAccountType must be set with a SubAccountId")
        tags = val.get("Tags")
        if tags is not None:
            try:
                parsed = json.loads(tags)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict) or not all(isinstance(k, str) for k in parsed):
                bad("Tags must be a JSON object with string keys")
        for col in ("BilledCost", "EffectiveCost"):
            d = _dec(val.get(col) or "x")
            if category == "Usage" and d is not None and d < 0:
                bad(f"{col} of usage must not be negative")
    return problems
