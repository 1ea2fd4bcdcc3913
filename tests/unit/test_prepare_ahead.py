"""The first CPUX's engine work begun before the flow run exists (`pnr.lifecycle.prepare_ahead`): it is under way
at once, the flow takes it over only for the same CPUX and options, and a CPUX run carries on from it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pnr.engines import EngineSet
from pnr.exceptions import EngineError, EngineUnreachable
from pnr.lifecycle import prepare_ahead
from tests.unit.test_early_start import chain
from tests.unit.test_lifecycle import FakeEngine


class GatedEngine(FakeEngine):
    """The fake engine; its network is made only when the test lets it, and every network it made is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.may_make = threading.Event()
        self.made: list[str] = []

    def ensure_network(self, domain: str) -> str:
        self.may_make.wait(10)
        self.made.append(domain)
        return f"pnr_{domain}"


def test_the_engine_work_is_under_way_at_once_and_taken_over_only_for_the_same_run(tmp_path: Path) -> None:
    plan, config = chain(tmp_path)
    engine = GatedEngine()
    ahead = prepare_ahead(plan, ["main"], EngineSet.single(engine, plan), config)  # type: ignore[arg-type]
    assert ahead.preparing.running()  # begun, waiting for the engine: the caller goes on meanwhile
    assert ahead.take("main", build=False, take_over=False) is ahead
    assert ahead.take("main", build=True, take_over=False) is None  # a build prepares in its flow run
    assert ahead.take("main", build=False, take_over=True) is None
    assert ahead.take("other", build=False, take_over=False) is None
    engine.may_make.set()
    images, free = ahead.preparing.result(10)
    assert engine.made == ["d"] and set(images) == {"a", "b", "c"} and free == {"a", "b", "c"}


def test_an_engine_error_reaches_whoever_takes_the_work_over(tmp_path: Path) -> None:
    plan, config = chain(tmp_path)

    class Silent(FakeEngine):
        def ping(self, *_: Any) -> None:
            raise EngineError("the engine does not answer")

    ahead = prepare_ahead(plan, ["main"], EngineSet.single(Silent(), plan), config)  # type: ignore[arg-type]
    error = ahead.preparing.exception(10)
    assert isinstance(error, EngineUnreachable) and "does not answer" in str(error)
