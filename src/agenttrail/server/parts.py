"""Assembles the full server: the core app plus every part that contributes routes or hooks.

A part is a module with `install(services) -> list[BaseRoute]`. Listing it here is the one edit
needed to add a part to `agenttrail serve`.
"""

from __future__ import annotations

import importlib

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from agenttrail.config import Settings
from agenttrail.server.app import Services, build_services, create_app

PARTS = (
    "agenttrail.server.metrics",
    "agenttrail.governance.install",
    "agenttrail.server.ingest",
    "agenttrail.server.sessions",
    "agenttrail.server.query",
    "agenttrail.server.otlp",
    "agenttrail.server.webhooks",
    "agenttrail.server.retention",
    "agenttrail.server.ui",
    "agenttrail.server.collector",  # last: it freezes what the others made when they started
)


def install_parts(svc: Services) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for name in PARTS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # that part is not built yet
            raise
        routes.extend(mod.install(svc))
    return routes


def create_server_app(settings: Settings, services: Services | None = None) -> Starlette:
    svc = services or build_services(settings)
    return create_app(settings, services=svc, extra_routes=install_parts(svc))
