"""The reports by name, as the CLI (`agenttrail report NAME`) and the API (`/api/v1/reports/NAME`) run them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine

from agenttrail.reports.adoption import adoption
from agenttrail.reports.base import FilterError, Filters, Report, check_filters
from agenttrail.reports.models import models
from agenttrail.reports.outliers import outliers
from agenttrail.reports.packages import packages
from agenttrail.reports.shipped import shipped
from agenttrail.reports.spend import DIMENSIONS, spend_report
from agenttrail.reports.stats import OUTLIER_Z


class ReportError(ValueError):
    """A report was asked for with options it does not take; the message says which."""


def _spend(engine: Engine, f: Filters, opts: Mapping[str, str]) -> Report:
    by = opts.get("by", "team")
    if by not in DIMENSIONS:
        raise ReportError(f"by must be one of {', '.join(DIMENSIONS)}")
    return spend_report(engine, f, by)


def _outliers(engine: Engine, f: Filters, opts: Mapping[str, str]) -> Report:
    try:
        threshold = float(opts.get("threshold", OUTLIER_Z))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):  # nan flagged nothing and said so nowhere
        raise ReportError("threshold must be a number, e.g. 3.5")
    return outliers(engine, f, threshold=threshold)


def _packages(engine: Engine, f: Filters, opts: Mapping[str, str]) -> Report:
    return packages(engine, f, name=opts.get("name") or None, ecosystem=opts.get("ecosystem") or None)


Runner = Callable[[Engine, Filters, Mapping[str, str]], Report]

REPORTS: dict[str, Runner] = {
    "adoption": lambda e, f, _o: adoption(e, f),
    "spend": _spend,
    "shipped": lambda e, f, _o: shipped(e, f),
    "outliers": _outliers,
    "models": lambda e, f, _o: models(e, f),
    "packages": _packages,
}
OPTIONS: dict[str, tuple[str, ...]] = {
    "spend": ("by",),
    "outliers": ("threshold",),
    "packages": ("name", "ecosystem"),
}


def run_report(engine: Engine, name: str, f: Filters, opts: Mapping[str, Any] | None = None) -> Report:
    if name not in REPORTS:
        raise ReportError(f"no report named {name!r}; reports: {', '.join(REPORTS)}")
    given = {k: str(v) for k, v in (opts or {}).items() if v is not None}
    unknown = sorted(set(given) - set(OPTIONS.get(name, ())))
    if unknown:
        takes = ", ".join(OPTIONS.get(name, ())) or "no options"
        raise ReportError(f"report {name} does not take {', '.join(unknown)} (it takes {takes})")
    try:
        check_filters(engine, f)
    except FilterError as e:
        raise ReportError(str(e)) from None
    return REPORTS[name](engine, f, given)
