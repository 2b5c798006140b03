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


@pytest.fixture
def mock_url(shared_mock_url: str) -> str:
    """The shared default-config mock, with no requests, failures or scenario left by other tests."""
    control = MockControl(shared_mock_url)
    control.reset()
    control.clear_failures()
    control.set_scenario(None)
    return shared_mock_url


@pytest.fixture
def control(mock_url: str) -> MockControl:
    return MockControl(mock_url)


def make_anthropic(url: str, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=10)


def make_openai(url: str, key: str = "sk-openai-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)


@pytest.fixture
def claude(mock_url: str) -> Iterator[anthropic.Anthropic]:
    with make_anthropic(mock_url) as client:
        yield client


@pytest.fixture
def oai(mock_url: str) -> Iterator[openai.OpenAI]:
    with make_openai(mock_url) as client:
        yield client


@pytest.fixture
def raw(mock_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_url, timeout=10) as client:
        yield client


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
