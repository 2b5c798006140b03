"""Load another migration script as a module, so a later migration reuses an earlier one's SQL builders.

The version scripts are not importable by name (their file names start with digits, and alembic loads
them itself), so they are loaded from their path; each load is a module of its own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

VERSIONS = Path(__file__).with_name("versions")


def load(filename: str) -> ModuleType:
    path = VERSIONS / filename
    spec = importlib.util.spec_from_file_location(f"agenttrail_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
