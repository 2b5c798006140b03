"""Test support shipped with agenttrail: the fake LLM provider (`agenttrail mock-llm`).

    from agenttrail.testing import MockConfig, MockControl, run_in_thread

    with run_in_thread(MockConfig()) as url:
        anthropic.Anthropic(base_url=url, api_key="k")
        openai.OpenAI(base_url=url + "/v1", api_key="k")
        MockControl(url).fail(529, model="claude-*")

What it serves and how to steer it: `agenttrail.testing.mock_llm` and docs/mock-llm.md.
"""

from __future__ import annotations

from agenttrail.testing.mock_client import MockControl, parse_sse
from agenttrail.testing.mock_llm import (
    Failure,
    MockConfig,
    MockDisconnect,
    MockState,
    Scenario,
    Turn,
    create_app,
    load_scenario,
    run_in_thread,
    serve_forever,
)

__all__ = [
    "Failure",
    "MockConfig",
    "MockControl",
    "MockDisconnect",
    "MockState",
    "Scenario",
    "Turn",
    "create_app",
    "load_scenario",
    "parse_sse",
    "run_in_thread",
    "serve_forever",
]
