"""`agenttrail serve` and `mock-llm` refuse arguments they cannot use before starting anything."""

from __future__ import annotations

import subprocess
import sys

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agenttrail", *args], capture_output=True, text=True, timeout=60)


def test_an_unknown_log_level_is_one_line(home: str) -> None:
    p = cli("serve", "--log-level", "loud", "--port", "0")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "--log-level must be one of debug, info, warning, error, got 'loud'" in p.stderr


@pytest.mark.parametrize("command", ["serve", "mock-llm"])
@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_refused(home: str, command: str, port: str) -> None:
    # 99999 was taken: uvicorn then listened on some other port while saying 99999.
    p = cli(command, "--port", port)
    assert p.returncode == 2 and "Invalid value for '--port'" in p.stderr


def test_help_names_what_serve_runs(home: str) -> None:
    p = cli("serve", "--help")
    assert p.returncode == 0 and "OTLP" in p.stdout
    assert "dashboard" not in p.stdout  # there is none: GET /ui is a 404
