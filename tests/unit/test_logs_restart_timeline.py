"""`pnr logs` (sources, merging, following, prefixes), `pnr restart` (the watch's restart on a fake engine) and the
timeline picture (SVG structure): no daemon, no Prefect."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pnr.cli.render import LogPrinter, _size
from pnr.engines.dockerapi import LogStream
from pnr.engines.engine import LABEL_CHUNK, LABEL_DOMAIN, LABEL_MANAGED
from pnr.engines.protocol import ContainerState
from pnr.exceptions import ConfigError
from pnr.lifecycle import CpuxRun, Phase, RunControl, Watcher
from pnr.lifecycle.logs import FollowEnded, LogFollower, LogLine, log_sources, parse_stamp, read_logs
from pnr.lifecycle.timeline import critical_path, svg_data_uri, timeline_chunks, timeline_svg
from pnr.model import PnR, parse_domain
from pnr.model.plan import make_plan
from pnr.runtime.store import SignalStore
from tests.unit.fakes import FakeEngineBase

SVG = "{http://www.w3.org/2000/svg}"


def _plan(chunks: list[dict[str, Any]], name: str = "d") -> Any:
    return make_plan(parse_domain({"name": name, "cpuxs": {"main": {"design_chunks": chunks}}}))


def _chunk(name: str, gate: str = "system_ready", policy: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "gatekeeper": {gate: {"tv": "Y"}},
        "flowout": {f"{name}_ready": {"tv": "Y"}},
        "container": {"name": f"c-{name}", "image": "img"},
    }
    if policy:
        body["on_dependency_lost"] = policy
    return body


# -- the timeline picture -------------------------------------------------------------------------------


def _diamond_times() -> dict[str, dict[str, Any]]:
    t = 1000.0

    def chunk(started: float, probe: float | None, ready: float | None, phase: str = "ready") -> dict[str, Any]:
        return {
            "phase": phase,
            "created_at": t,
            "started_at": t + started,
            "first_probe_at": None if probe is None else t + probe,
            "ready_at": None if ready is None else t + ready,
        }

    return {
        "a": chunk(0.1, 0.2, 1.0),
        "b": chunk(1.1, 1.2, 1.5),
        "c": chunk(1.1, 1.2, 3.0),
        "d": chunk(3.1, 3.2, 3.5),
        "e": chunk(1.1, 1.3, None, phase="failed"),
    }


DIAMOND_DEPS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["a"]}


def test_critical_path_follows_the_producer_that_was_ready_last():
    ready = {"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.5}
    assert critical_path(DIAMOND_DEPS, ready) == ["a", "c", "d"]
    assert critical_path(DIAMOND_DEPS, {}) == []


def test_timeline_svg_has_a_row_per_chunk_stages_and_the_critical_path():
    svg = timeline_svg(_diamond_times(), DIAMOND_DEPS, title="readiness timeline of d")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == f"{SVG}svg" and root.get("width") and root.get("height")
    rows = {g.get("data-chunk"): g for g in root.iter(f"{SVG}g") if "row" in (g.get("class") or "").split()}
    assert set(rows) == {"a", "b", "c", "d", "e"}
    critical = {n for n, g in rows.items() if g.get("data-critical") == "true"}
    assert critical == {"a", "c", "d"}
    assert all("critical" in rows[n].get("class", "") for n in critical)
    path = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "critical-path")
    assert path.get("data-path") == "a c d" and len(list(path.iter(f"{SVG}path"))) == 2
    bars = {r.get("data-stage"): r for r in rows["c"].iter(f"{SVG}rect") if r.get("data-stage")}
    assert list(bars) == ["waiting", "starting", "probing", "ready"]
    assert (bars["waiting"].get("data-from"), bars["waiting"].get("data-to")) == ("0.000", "1.100")
    assert (bars["probing"].get("data-from"), bars["probing"].get("data-to")) == ("1.200", "3.000")
    assert float(bars["ready"].get("data-to")) == pytest.approx(3.5)  # the ready bar runs to the end of the run
    # the failed chunk: its last stage in red, to the end of the axis, and the row says so
    assert rows["e"].get("data-phase") == "failed" and "failed" in rows["e"].get("class", "")
    last = [r for r in rows["e"].iter(f"{SVG}rect") if r.get("data-stage")][-1]
    assert last.get("data-stage") == "probing" and last.get("fill") == "#e63946"
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for word in ("waiting", "starting", "probing", "ready", "critical path: a → c → d", "seconds from the start"):
        assert word in texts
    # rows in start order; x grows with time
    order = [g.get("data-chunk") for g in rows.values()]
    assert order[0] == "a" and order[-1] == "d"
    assert float(bars["probing"].get("x")) > float(bars["starting"].get("x")) > float(bars["waiting"].get("x"))


def test_timeline_svg_of_nothing_and_of_chunk_progress_objects():
    assert "no chunk ran" in timeline_svg({}, {})
    from pnr.lifecycle import ChunkProgress

    prog = {"x": ChunkProgress("x", "main", phase=Phase.READY, created_at=5.0, started_at=5.5, ready_at=6.0)}
    (row,) = timeline_chunks(prog)
    assert row.phase == "ready" and row.first_probe_at is None
    root = ET.fromstring(timeline_svg(prog, {"x": []}))
    stages = [r.get("data-stage") for r in root.iter(f"{SVG}rect") if r.get("data-stage")]
    assert stages == ["waiting", "starting", "ready"]  # no probe: started → ready is "starting"
    assert svg_data_uri("<svg/>") == "data:image/svg+xml;base64,PHN2Zy8+"
    assert _size(timeline_svg(prog, {})) == (960, 56 + 26 + 92)


def test_a_chunk_names_markup_is_escaped():
    root = ET.fromstring(timeline_svg({"<b>&": {"phase": "ready", "created_at": 1.0, "ready_at": 2.0}}, {}))
    assert any(g.get("data-chunk") == "<b>&" for g in root.iter(f"{SVG}g"))


# -- logs --------------------------------------------------------------------------------------------------


class LogEngine(FakeEngineBase):
    """Containers with logs; `streams` are what logs_stream hands out (to see that they get closed)."""

    def __init__(self, domain: str, logs: dict[str, list[str]], foreign: bool = False) -> None:
        self.domain = domain
        self.logs = logs
        self.foreign = foreign
        self.streams: list[FakeStream] = []

    def owned_containers(self, domain: str) -> list[ContainerState]:
        labels = {LABEL_MANAGED: "true", LABEL_DOMAIN: domain}
        return [
            ContainerState(f"id-{chunk}", f"c-{chunk}", "running", True, None, {**labels, LABEL_CHUNK: chunk})
            for chunk in self.logs
        ]

    def logs_since(
        self, cid: str, *, since: Any = None, tail: int | None = None, timestamps: bool = False
    ) -> list[str]:
        lines = self.logs[cid.removeprefix("id-")]
        lines = lines[-tail:] if tail else lines
        return lines if timestamps else [ln.split(" ", 1)[1] for ln in lines]

    def logs_stream(self, cid: str, *, tail: int | None = None, timestamps: bool = False) -> FakeStream:
        stream = FakeStream(self.logs_since(cid, tail=tail, timestamps=timestamps), endless=cid == "id-db")
        self.streams.append(stream)
        return stream


class FakeStream:
    def __init__(self, lines: list[str], endless: bool) -> None:
        self.lines = lines
        self.endless = endless
        self.closed = threading.Event()

    def __iter__(self) -> Any:
        yield from self.lines
        if self.endless:  # like a running container: blocks until closed
            self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


def test_log_sources_names_unknown_chunks_and_those_without_a_container():
    plan = _plan([_chunk("db"), _chunk("api", "db_ready"), _chunk("web", "api_ready")])
    engine = LogEngine("d", {"db": [], "web": []})
    with pytest.raises(ConfigError, match="no chunk named 'nope' in domain d"):
        log_sources(plan, engine, ["db", "nope"])
    sources, missing = log_sources(plan, engine)
    assert [s.chunk for s in sources] == ["db", "web"] and missing == ["api"]
    sources, missing = log_sources(plan, engine, ["web"])
    assert [(s.chunk, s.container, s.container_id) for s in sources] == [("web", "c-web", "id-web")] and not missing


def test_read_logs_merges_containers_in_time_order_and_keeps_each_ones_order():
    plan = _plan([_chunk("db"), _chunk("api", "db_ready")])
    engine = LogEngine(
        "d",
        {
            "db": ["2026-11-27T10:00:00.100000000Z db one", "2026-11-27T10:00:02.000000000Z db two"],
            "api": ["2026-11-27T10:00:01.5Z api one", "2026-11-27T10:00:01.5Z api two", "not a stamp"],
        },
    )
    sources, _ = log_sources(plan, engine)
    lines = read_logs(sources)
    assert [ln.text for ln in lines] == ["not a stamp", "db one", "api one", "api two", "db two"]
    assert lines[1].stamp == "" and lines[1].at == pytest.approx(parse_stamp("2026-11-27T10:00:00.1Z"))
    stamped = read_logs(sources, tail=1, timestamps=True)
    assert [(ln.chunk, ln.stamp) for ln in stamped] == [("api", ""), ("db", "2026-11-27T10:00:02.000000000Z")]


def test_parse_stamp():
    assert parse_stamp("1970-01-01T00:00:01.500000000Z") == pytest.approx(1.5)
    assert parse_stamp("1970-01-01T01:00:01.123456789+01:00") == pytest.approx(1.123456)
    assert parse_stamp("1970-01-01T00:00:02Z") == pytest.approx(2.0)
    assert parse_stamp("hello") is None


def test_follower_merges_containers_and_stop_closes_every_stream():
    plan = _plan([_chunk("db"), _chunk("api", "db_ready")])
    engine = LogEngine("d", {"db": ["t db one", "t db two"], "api": ["t api one"]})
    sources, _ = log_sources(plan, engine)
    follower = LogFollower(sources)
    follower.start()
    seen: list[Any] = []
    lines = follower.lines(poll=0.05)
    while len([x for x in seen if isinstance(x, LogLine)]) < 3:
        seen.append(next(lines))
    ended = next(lines)  # api's stream ended by itself (its container stopped); db's goes on
    assert ended == FollowEnded("api")
    began = time.monotonic()
    follower.stop()
    assert time.monotonic() - began < 2 and all(s.closed.is_set() for s in engine.streams)
    texts = [x.text for x in seen if isinstance(x, LogLine)]
    assert sorted(texts) == ["api one", "db one", "db two"] and texts.index("db one") < texts.index("db two")


def test_log_stream_splits_frames_into_lines():
    class Raw:
        def __iter__(self) -> Any:
            yield from [b"one\ntw", b"o\r\n", b"th", b"ree\n", "\u00e9t\u00e9".encode(), b"\n", b"last"]

        def close(self) -> None:
            pass

    assert list(LogStream(Raw())) == ["one", "two", "three", "été", "last"]


def test_log_printer_aligns_names_and_colours_each_chunk_the_same_way():
    plain = LogPrinter(["db", "api-gateway"], colour=False)
    assert plain.format("db", "hello") == "db          | hello\n"
    assert plain.format("api-gateway", "x", "2026-11-27T10:00:00Z") == "api-gateway | 2026-11-27T10:00:00Z x\n"
    coloured = LogPrinter(["db", "api-gateway"], colour=True)
    assert coloured.prefix("db").startswith("\x1b[36m") and coloured.prefix("api-gateway").startswith("\x1b[33m")
    assert coloured.prefix("db") == LogPrinter(["db", "api-gateway"], colour=True).prefix("db")


# -- restart through the watch ----------------------------------------------------------------------------


class RestartEngine(FakeEngineBase):
    """Containers that stop and start; records every call in order."""

    def __init__(self, names: list[str]) -> None:
        self.running = dict.fromkeys(names, True)
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def inspect(self, name: str) -> ContainerState | None:
        name = name.removeprefix("id-")
        if name not in self.running:
            return None
        up = self.running[name]
        return ContainerState(f"id-{name}", name, "running" if up else "exited", up, None if up else 0, {})

    def stop(self, name: str, timeout: int | None = None) -> None:
        with self.lock:
            self.calls.append(f"stop {name}")
            self.running[name] = False

    def start(self, name: str) -> None:
        with self.lock:
            self.calls.append(f"start {name}")
            self.running[name] = True


def test_a_restart_requested_from_the_watch_regates_dependents_per_policy(tmp_path: Path):
    plan = _plan(
        [
            _chunk("db"),
            _chunk("worker", "db_ready", policy="stop"),
            _chunk("api", "db_ready", policy="restart"),
            _chunk("web", "db_ready", policy="ignore"),
        ]
    )
    store = SignalStore(tmp_path / "rt", "d")
    store.start_run({"system_ready": PnR(tv="Y")})
    store.set({f"{n}_ready": PnR(tv="Y") for n in ("db", "worker", "api", "web")})
    engine = RestartEngine(["c-db", "c-worker", "c-api", "c-web"])
    run = CpuxRun(
        plan=plan, cpux="main", store=store, engine=engine, config_path=str(tmp_path / "d.json"), timeout_seconds=60
    )
    for prog in run.progress.values():
        prog.phase = Phase.READY
    seen_n: list[str] = []
    store.subscribe(lambda name, _old, new: seen_n.append(name) if new.tv == "N" else None)
    watcher = Watcher([run], poll=0.05)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError):
            watcher.request_restart("nope")
        watcher.request_restart("db")
        deadline = time.monotonic() + 20
        while not (watcher.settled() and "start c-db" in engine.calls) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.settled(), watcher.unsettled()
    finally:
        watcher.stop("test over")
        thread.join(10)
    calls = engine.calls
    # db down first; worker (stop) stopped while db_ready is N, started after db is back; api (restart) stopped
    # and started after db is back; web (ignore) untouched
    assert calls[0] == "stop c-db"
    assert calls.index("stop c-worker") < calls.index("start c-db") < calls.index("start c-worker")
    assert calls.index("start c-db") < calls.index("stop c-api") < calls.index("start c-api")
    assert not any("c-web" in c for c in calls)
    assert {"db_ready", "worker_ready", "api_ready"} <= set(seen_n)
    assert all(store.snapshot()[f"{n}_ready"].tv == "Y" for n in ("db", "worker", "api", "web"))
    assert all(p.phase == Phase.READY for p in run.progress.values())


def test_restart_control_interrupt_stops_the_watch(tmp_path: Path):
    plan = _plan([_chunk("db")])
    store = SignalStore(tmp_path / "rt", "d")
    store.start_run({"system_ready": PnR(tv="Y")})
    control = RunControl()
    run = CpuxRun(
        plan=plan,
        cpux="main",
        store=store,
        engine=RestartEngine(["c-db"]),
        config_path=str(tmp_path / "d.json"),
        timeout_seconds=60,
        control=control,
    )
    run.progress["db"].phase = Phase.READY
    watcher = Watcher([run], poll=0.05)
    done: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: done.update(watcher.run()), daemon=True)
    thread.start()
    time.sleep(0.2)
    control.interrupt("Ctrl-C")
    thread.join(5)
    assert done["ended"] == "Ctrl-C"


def test_the_timeline_artifact_embeds_the_picture_as_a_data_uri_image_and_keeps_the_table():
    import base64
    import re

    from pnr.lifecycle import ChunkProgress
    from pnr.prefect.artifacts import timeline_markdown

    plan = _plan([_chunk("db"), _chunk("api", "db_ready")], name="shop")
    progress = {
        "db": ChunkProgress("db", "main", phase=Phase.READY, created_at=1.0, started_at=1.1, ready_at=2.0),
        "api": ChunkProgress("api", "main", phase=Phase.READY, created_at=1.0, started_at=2.1, ready_at=3.0),
    }
    md = timeline_markdown(plan, progress)
    found = re.search(r"^!\[readiness timeline of shop\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)$", md, re.M)
    assert found, md
    root = ET.fromstring(base64.b64decode(found.group(1)))
    assert [g.get("data-chunk") for g in root.iter(f"{SVG}g") if g.get("data-chunk")] == ["db", "api"]
    assert "<svg" not in md.replace(found.group(0), "")  # never inline: the UI's markdown strips <svg>
    assert "| ★ | **api** |" in md and "Critical path: db → api" in md
