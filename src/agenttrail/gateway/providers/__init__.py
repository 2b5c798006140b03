"""Provider seams: each module knows one provider's wire format. Adding one means adding a module."""

from typing import cast

from agenttrail.gateway.providers.anthropic import ANTHROPIC
from agenttrail.gateway.providers.base import Endpoint, ProviderSpec, StreamObserver
from agenttrail.gateway.providers.openai import OPENAI

PROVIDERS: dict[str, ProviderSpec] = {
    ANTHROPIC.name: cast(ProviderSpec, ANTHROPIC),
    OPENAI.name: cast(ProviderSpec, OPENAI),
}

__all__ = ["ANTHROPIC", "OPENAI", "PROVIDERS", "Endpoint", "ProviderSpec", "StreamObserver"]
