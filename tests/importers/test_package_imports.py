"""`agenttrail.importers` loads its OTLP half (and protobuf) only when an OTLP name is used: a transcript
import starts ~30 ms sooner, and every OTLP name is still reachable from the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

import agenttrail.importers as importers
from agenttrail.importers import otlp


def test_a_transcript_import_does_not_load_protobuf() -> None:
    code = (
        "import sys, agenttrail.importers\n"
        "from agenttrail.importers import iter_codex, iter_claude_code\n"
        "print('google.protobuf' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(importers._OTLP))
def test_every_otlp_name_is_still_the_package_s(name: str) -> None:
    assert getattr(importers, name) is getattr(otlp, name)
    assert name in importers.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        importers.nothing_here  # noqa: B018
