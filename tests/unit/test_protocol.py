"""A bring-up as types: the runner's messages encode and decode to the same objects, and one place builds an
outcome from how a run ended."""

from __future__ import annotations

import json

import pytest

from pnr.backend.protocol import Accepted, UpOutcome, UpRequest, decode, encode, from_message
from pnr.exceptions import ConfigError, EngineError
from pnr.records import (
    ChunkStatus,
    DomainStatus,
    EngineStatus,
    ProgressEvent,
    RunNote,
    RunTimeline,
    SignalValue,
    TimelineChunk,
)


def _status() -> DomainStatus:
    return DomainStatus(
        domain="d",
        signals={"db_ready": SignalValue("is db ready?", ["yes"], "Y")},
        chunks={"db": ChunkStatus("completed", "default", "c-db", "id1", "startup", "ready", None)},
        runtime_dir="/rt",
        stale={},
        problems={},
        engines={"default": EngineStatus(None, None, True, None)},
    )


@pytest.mark.parametrize(
    "message",
    [
        Accepted("d", 3, ["startup", "app"], True),
        ProgressEvent("d", "startup", "db", "probing", "tcp 5432", 1.5, None),
        RunNote("d", "watch.started", "watching db", {"chunks": ["db"]}),
        Accepted("d", 1, ["startup"], False, "/rt"),
        UpOutcome.done({"cpuxs": {"startup": {}}}, "run-1").with_report(_status(), None),
        UpOutcome.failed(EngineError("db failed"), "run-2").with_report(
            _status(), RunTimeline("d", [TimelineChunk("db", "failed", 1.0, 1.5, None, None)], {"db": []}, 2.0)
        ),
        UpOutcome.failed(ConfigError("f.json", []), None),
        UpOutcome.stopped(),
    ],
)
def test_every_message_survives_the_connection(message: object) -> None:
    line = encode(message)  # type: ignore[arg-type]
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message


def test_an_outcome_carries_the_exit_status_of_what_ended_the_run() -> None:
    assert UpOutcome.done({}).exit_status == 0
    assert UpOutcome.failed(ConfigError("f.json", [])).exit_status == 2
    assert UpOutcome.failed(EngineError("gone")).exit_status == 1
    assert UpOutcome.failed(KeyboardInterrupt(), interrupted=True) == UpOutcome(
        False, 1, "", True, error="KeyboardInterrupt"
    )
    assert UpOutcome.stopped().exit_status == 130


def test_a_request_is_the_flows_parameters_and_names_its_domain_state() -> None:
    request = UpRequest("/c/d.json", runtime_dir="/rt", timeout_seconds=5.0)
    assert request.flow_parameters()["timeout_seconds"] == 5.0
    assert UpRequest.from_json(json.loads(json.dumps(request.flow_parameters()))) == request
    assert request.key == "/c/d.json|/rt"


def test_a_line_that_is_no_runner_message_is_refused() -> None:
    with pytest.raises(ValueError, match="not a message"):
        from_message({"type": "pong"})
