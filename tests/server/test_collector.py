"""The server freezes what it made at start-up and collects young objects less often; it gives the
process its previous settings back when it stops."""

from __future__ import annotations

import gc

from starlette.testclient import TestClient

from agenttrail.config import load_settings
from agenttrail.server.app import build_services
from agenttrail.server.collector import YOUNG_THRESHOLD
from agenttrail.server.parts import create_server_app
from agenttrail.store.database import open_engine


def test_a_running_server_keeps_its_start_up_objects_out_of_collections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/at.db"
    settings = load_settings(env={"AGENTTRAIL_DATABASE_URL": url, "AGENTTRAIL_HOME": str(tmp_path)})
    app = create_server_app(settings, build_services(settings, engine=open_engine(url)))
    gc.unfreeze()
    before = gc.get_threshold()
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000  # the modules, tables and the app itself
        assert gc.get_threshold() == (max(YOUNG_THRESHOLD, before[0]), *before[1:])
        # A full collection no longer walks them: it finds only what was made since.
        assert len(gc.get_objects(generation=2)) < gc.get_freeze_count()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
