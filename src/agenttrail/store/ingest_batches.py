"""Several waiting batches stored as if one after another, in as few transactions as their keys allow.

Why: on SQLite one transaction at a time writes, and a transaction's fixed costs are large next to a
2,000-event batch (the roll-up pause's DDL, the commit's WAL pages: event ids are content hashes, so
each event dirties a random leaf of the id index, and a leaf dirtied by four batches is written once
in one transaction instead of four times). Batches that wait for the writer together were sent
concurrently, so any order of them is one their senders could have seen; those under one attribution
(one key) are joined into one `ingest`, each keeping its own accepted and duplicate counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from agenttrail.store.ingest import Attribution, IngestResult, Prepared, ingest_ids, ingest_prepared

Batch = tuple[Prepared, Attribution]


def ingest_batches(engine: Engine, batches: Sequence[Batch]) -> list[IngestResult | Exception]:
    """Each batch's result, or the error that stopped it: a batch that fails fails alone (its group is
    stored again batch by batch, so the others' events are kept and the culprit's error is its own)."""
    groups: dict[Attribution, list[int]] = {}
    for i, (_events, who) in enumerate(batches):
        groups.setdefault(who, []).append(i)
    results: list[IngestResult | Exception | None] = [None] * len(batches)
    for who, members in groups.items():
        if len(members) == 1:
            results[members[0]] = _alone(engine, batches[members[0]])
            continue
        try:
            new_ids = ingest_ids(engine, Prepared.joined([batches[i][0] for i in members]), who)
        except Exception:  # the group rolled back; each batch alone shows whose error it was
            for i in members:
                results[i] = _alone(engine, batches[i])
            continue
        for i in members:
            events = batches[i][0].events
            mine = batches[i][0].rows.keys() & new_ids
            new_ids -= mine  # a later batch's repeat of an event is its duplicate, as in turn
            results[i] = IngestResult(accepted=len(mine), duplicates=len(events) - len(mine))
    done = [r for r in results if r is not None]
    assert len(done) == len(batches)  # every batch is in exactly one group
    return done


def _alone(engine: Engine, batch: Batch) -> IngestResult | Exception:
    try:
        return ingest_prepared(engine, *batch)
    except Exception as e:  # handed to the batch's own request
        return e
