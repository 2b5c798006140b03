"""Fixtures for the mock provider's tests: one shared server (reset before each test) and SDK clients.

Payloads are also validated strictly against the SDKs' pydantic models: the SDKs themselves parse
leniently (a missing required field passes silently), so that check is what catches a drifting shape.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from agenttrail.testing import MockConfig, MockControl, run_in_thread


@pytest.fixture(scope="session")
def shared_mock_url() -> Iterator[str]:
    with run_in_thread(MockConfig()) as url:
        yield url


@pytest.fixture(scope="session")
def _shared_control(shared_mock_url: str) -> Iterator[MockControl]:
    with MockControl(shared_mock_url) as control:
        yield control


@pytest.fixture
def mock_url(shared_mock_url: str, _shared_control: MockControl) -> str:
    """The shared default-config mock, with no requests, failures or scenario left by other tests."""
    _shared_control.reset()
    _shared_control.clear_failures()
    _shared_control.set_scenario(None)
    return shared_mock_url


@pytest.fixture
def control(mock_url: str, _shared_control: MockControl) -> MockControl:
    return _shared_control


# Clients are shared across the session: building one costs tens of milliseconds (TLS setup).
@pytest.fixture(scope="session")
def _claude(shared_mock_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=shared_mock_url, api_key="sk-ant-test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def _oai(shared_mock_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=shared_mock_url + "/v1", api_key="sk-openai-test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def _raw(shared_mock_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_mock_url, timeout=10) as c:
        yield c


@pytest.fixture
def claude(mock_url: str, _claude: anthropic.Anthropic) -> anthropic.Anthropic:
    return _claude


@pytest.fixture
def oai(mock_url: str, _oai: openai.OpenAI) -> openai.OpenAI:
    return _oai


@pytest.fixture
def raw(mock_url: str, _raw: httpx.Client) -> httpx.Client:
    return _raw


def _members(union: Any) -> list[type[BaseModel]]:
    """The models of a (possibly Annotated) union type."""
    args = typing.get_args(union)
    if args and typing.get_origin(union) is typing.Annotated:
        return _members(args[0])
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _type_literal(model: type[BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("type")
    return typing.get_args(field.annotation) if field is not None else ()


def strict_event(union: Any, data: dict[str, Any]) -> BaseModel:
    """Validate an event against the one union member its `type` names; an unknown type is drift."""
    matches = [m for m in _members(union) if data.get("type") in _type_literal(m)]
    assert matches, f"the SDK knows no event of type {data.get('type')!r}"
    model = matches[0]
    return model.model_validate(data)


@pytest.fixture
def validate_event() -> Callable[[Any, dict[str, Any]], BaseModel]:
    return strict_event
