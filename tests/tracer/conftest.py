"""Shared helpers for the tracer tests: real tools or a skip that CI turns into a failure."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, why: str = "") -> str:
    """The tool's path; skip when it is missing, but fail under AGENTTRAIL_TEST_STRICT=1 (CI)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed{': ' + why if why else ''}"
        if os.environ.get("AGENTTRAIL_TEST_STRICT") == "1":
            pytest.fail(f"{reason} (AGENTTRAIL_TEST_STRICT=1 forbids skipping)")
        pytest.skip(reason)
    return path


@pytest.fixture
def strace() -> str:
    return require_tool("strace", "the supervisor traces with it")


@pytest.fixture
def git() -> str:
    return require_tool("git")


@pytest.fixture
def bwrap() -> str:
    """bubblewrap that can actually make a sandbox here (installed is not enough in some containers)."""
    from agenttrail.tracer.sandbox import probe

    path = require_tool("bwrap", "the sandbox is built with bubblewrap")
    result = probe(path)
    if not result.ok:
        if os.environ.get("AGENTTRAIL_TEST_STRICT") == "1":
            pytest.fail(f"bubblewrap cannot run here: {result.reason}")
        pytest.skip(f"bubblewrap cannot run here: {result.reason}")
    return path
