"""Provider seams: each module knows one provider's wire format. Adding one means adding a module."""

from collections.abc import Mapping
from typing import cast

from agenttrail.gateway.providers.anthropic import ANTHROPIC, MODELS
from agenttrail.gateway.providers.base import Endpoint, ProviderSpec, StreamObserver
from agenttrail.gateway.providers.openai import OPENAI

PROVIDERS: dict[str, ProviderSpec] = {
    ANTHROPIC.name: cast(ProviderSpec, ANTHROPIC),
    OPENAI.name: cast(ProviderSpec, OPENAI),
}


def for_request(ep: Endpoint, headers: Mapping[str, str]) -> Endpoint:
    """The endpoint a request is for, where one path serves two providers: GET /v1/models from a
    client that speaks Anthropic (its SDKs and Claude Code send `anthropic-version`; an `x-api-key`
    is Anthropic's credential header) is Anthropic's model list, not OpenAI's."""
    if ep.name == "models" and ("anthropic-version" in headers or "x-api-key" in headers):
        return MODELS
    return ep


__all__ = ["ANTHROPIC", "OPENAI", "PROVIDERS", "Endpoint", "ProviderSpec", "StreamObserver", "for_request"]
