"""The runner's side of a finished bring-up: the status table it sends early is read from the bring-up's
result (decoded JSON), not from the engine."""

from __future__ import annotations

from pnr.backend.runner_process import _ready


def test_the_ready_containers_come_from_the_result_of_the_bring_up() -> None:
    result = {
        "domain": "d",
        "cpuxs": {
            "startup": {
                "db": {"phase": "ready", "container": "c-db", "container_id": "id1"},
                "job": {"phase": "ready", "container": "c-job", "container_id": None},
                "web": {"phase": "failed", "container": "c-web", "container_id": "id3"},
            },
            "app": {"api": {"phase": "ready", "container": "c-api", "container_id": "id4"}},
        },
        "signals": {},
    }
    known = _ready(result)
    assert sorted(known) == ["api", "db"]
    db = known["db"]
    assert (db.id, db.name, db.status, db.running, db.labels) == ("id1", "c-db", "running", True, {})


def test_a_result_without_chunk_tables_knows_no_container() -> None:
    assert _ready({"domain": "d"}) == {}
    assert _ready({"domain": "d", "cpuxs": {"startup": "not a table"}}) == {}
