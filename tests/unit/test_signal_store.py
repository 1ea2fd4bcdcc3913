"""The runtime signal store: concurrent writers never tear or lose a write, corrupt or
half-written external files are reported by name and ignored, stale files do not count, newest file wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, pnr_cli, write_config

from pnr.model import PnR
from pnr.runtime.files import atomic_write_json
from pnr.runtime.store import (
    EXTERNAL_FILE,
    MAX_SIGNAL_FILE_BYTES,
    SignalStore,
    own_file_name,
    parse_signal_file,
    read_state,
    update_signal_file,
)

Y, N = PnR(tv="Y"), PnR(tv="N")
WRITERS, WRITES = 8, 50

# One writer process: WRITES values of its own keys plus a shared key, alternating between two files.
WRITER = """
import sys
from pathlib import Path
from pnr.model import PnR
from pnr.runtime.store import update_signal_file
rdir, w, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    value = PnR(prompt=f"writer {w}", response=[f"{w}-{i}"], tv="YN"[i % 2])
    name = "external.json" if i % 2 == 0 else "shared.json"
    update_signal_file(rdir, name, {f"w{w}_{i}": value, "last": value})
"""


def _write_file(path: Path, data: object, mtime_s: float | None = None) -> None:
    path.write_text(json.dumps(data))
    if mtime_s is not None:
        os.utime(path, ns=(int(mtime_s * 1e9), int(mtime_s * 1e9)))


def _pnr(tv: str, *response: str) -> dict[str, object]:
    return {"prompt": "", "response": list(response), "tv": tv}


# -- concurrency ---------------------------------------------------------------------------------------


def test_many_processes_writing_at_once_lose_and_tear_nothing(runtime_dir: Path) -> None:
    stop = threading.Event()
    reads = {"files": 0, "refreshes": 0}
    bad: list[str] = []
    store = SignalStore(runtime_dir, "concurrency")

    def reader() -> None:
        # polls the raw files and the store while writers run: every read must parse
        while not stop.is_set():
            for name in (EXTERNAL_FILE, "shared.json"):
                path = runtime_dir / name
                if path.exists():
                    try:
                        parse_signal_file(path.read_text())
                        reads["files"] += 1
                    except (ValueError, OSError) as exc:
                        bad.append(f"{name}: {exc}")
            store.refresh()
            reads["refreshes"] += 1
            if store.problems:
                bad.append(repr(store.problems))

    thread = threading.Thread(target=reader)
    thread.start()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(runtime_dir), str(w), str(WRITES)], cwd=ROOT)
        for w in range(WRITERS)
    ]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        stop.set()
        thread.join()
    assert codes == [0] * WRITERS
    assert not bad, bad[:5]
    assert reads["files"] > 0 and reads["refreshes"] > 0

    state, problems = read_state(runtime_dir, "concurrency")
    assert problems == {}
    for w in range(WRITERS):
        for i in range(WRITES):
            got = state.get(f"w{w}_{i}")
            assert got is not None, f"write w{w}_{i} was lost"
            assert got.response == [f"{w}-{i}"] and got.tv == "YN"[i % 2]
    assert len([k for k in state if k.startswith("w")]) == WRITERS * WRITES
    # the shared key holds some writer's last value (the last write to the newest file)
    assert state["last"].response[0].split("-")[1] == str(WRITES - 1)
    # atomic writes leave no temp files behind
    assert sorted(p.name for p in runtime_dir.iterdir()) == sorted([".pnr", EXTERNAL_FILE, "shared.json"])


def test_concurrent_cli_signal_set_keeps_every_value(tmp_path: Path, runtime_dir: Path) -> None:
    cfg = write_config(
        tmp_path / "d.json",
        {
            "name": "cliconc",
            "cpuxs": {"x": {"design_chunks": [{"name": "a", "container": {"name": "cliconc-a", "image": "busybox"}}]}},
        },
    )
    script = (
        "import subprocess, sys\n"
        "for i in range(5):\n"
        "    r = subprocess.run([sys.executable, '-m', 'pnr.cli', 'signal', 'set', sys.argv[1], f'p{sys.argv[2]}_{i}',"
        " '--tv', 'y', '--response', f'{sys.argv[2]}-{i}', '--runtime-dir', sys.argv[3]],"
        " capture_output=True, text=True)\n"
        "    assert r.returncode == 0, r.stderr\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(cfg), str(p), str(runtime_dir)], cwd=ROOT) for p in range(4)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * 4
    got = pnr_cli("signal", "get", str(cfg), "--runtime-dir", str(runtime_dir))
    assert got.returncode == 0, got.stderr
    state = json.loads(got.stdout)
    assert {k: (v["tv"], v["response"]) for k, v in state.items()} == {
        f"p{p}_{i}": ("Y", [f"{p}-{i}"]) for p in range(4) for i in range(5)
    }


# -- corrupt and hostile files from outside --------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content",
    [
        ("half.json", b'{"ext_a": {"prompt": "", "response": ["yes"], "tv": "Y"'),
        ("empty.json", b""),
        ("binary.json", b"\xff\xfe\x00garbage"),
        ("deep.json", b"[" * 200_000 + b"]" * 200_000),
        ("list.json", b"[1, 2, 3]"),
        ("badtv.json", b'{"ext_a": {"tv": "maybe"}}'),
        ("extra.json", b'{"ext_a": {"tv": "Y", "colour": "red"}}'),
        ("notobj.json", b'{"ext_a": "Y"}'),
        ("bigint.json", b'{"ext_a": {"tv": "Y", "response": [' + b"9" * 5000 + b"]}}"),
        ("huge.json", b'{"ext_a": {"tv": "Y", "prompt": "' + b"x" * (MAX_SIGNAL_FILE_BYTES + 10) + b'"}}'),
    ],
)
def test_corrupt_external_file_is_reported_by_name_and_ignored(runtime_dir: Path, name: str, content: bytes) -> None:
    _write_file(runtime_dir / "good.json", {"ext_b": _pnr("Y")})
    (runtime_dir / name).write_bytes(content)
    store = SignalStore(runtime_dir, "corrupt", scope={"a_ready"})
    store.start_run({"system_ready": Y})
    assert store.problems.get(name)
    assert "\n" not in store.problems[name]
    assert store.get("ext_a").tv == "U"
    assert store.get("ext_b").tv == "Y" and store.get("system_ready").tv == "Y"
    # the outside view (pnr status / signal get) reports it the same way
    _state, problems = read_state(runtime_dir, "corrupt")
    assert name in problems
    # once the writer finishes, the file counts and the problem is gone
    _write_file(runtime_dir / name, {"ext_a": _pnr("y")})
    store.refresh()
    assert name not in store.problems and store.get("ext_a").tv == "Y"


def test_directory_and_dangling_symlink_named_json_are_skipped(runtime_dir: Path) -> None:
    (runtime_dir / "dir.json").mkdir()
    (runtime_dir / "dangling.json").symlink_to(runtime_dir / "nowhere")
    _write_file(runtime_dir / "ok.json", {"ext": _pnr("Y")})
    state, problems = read_state(runtime_dir, "d")
    assert state["ext"].tv == "Y" and problems == {}


def test_half_written_file_keeps_its_last_good_values_and_their_age(runtime_dir: Path) -> None:
    old = time.time() - 3600
    _write_file(runtime_dir / "writer.json", {"ext": _pnr("Y"), "a_ready": _pnr("Y")}, mtime_s=old)
    store = SignalStore(runtime_dir, "half", scope={"a_ready"})
    store.start_run({"system_ready": Y})
    assert store.get("ext").tv == "Y" and store.get("a_ready").tv == "U"  # stale for the run's own signal
    (runtime_dir / "writer.json").write_text('{"ext": {"tv": "N"')  # the writer is half-way, mtime is new
    store.refresh()
    assert "writer.json" in store.problems
    # the last good content still counts, and still as old: stale a_ready must not become fresh
    assert store.get("ext").tv == "Y" and store.get("a_ready").tv == "U"


def test_update_signal_file_replaces_a_corrupt_file_and_removes_with_none(runtime_dir: Path) -> None:
    (runtime_dir / EXTERNAL_FILE).write_text("{not json")
    update_signal_file(runtime_dir, EXTERNAL_FILE, {"a": Y, "b": N})
    update_signal_file(runtime_dir, EXTERNAL_FILE, {"b": None})
    assert parse_signal_file((runtime_dir / EXTERNAL_FILE).read_text()) == {"a": Y}
    (runtime_dir / EXTERNAL_FILE).write_bytes(b"[" * 100_000)  # would blow the recursion limit
    update_signal_file(runtime_dir, EXTERNAL_FILE, {"c": Y})
    assert parse_signal_file((runtime_dir / EXTERNAL_FILE).read_text()) == {"c": Y}


# -- stale files and the start of a run ----------------------------------------------------------------------


def test_stale_files_do_not_count_for_the_runs_signals_but_external_signals_survive(runtime_dir: Path) -> None:
    old = time.time() - 3600
    _write_file(runtime_dir / own_file_name("st"), {"a_ready": _pnr("Y"), "system_ready": _pnr("N")}, mtime_s=old)
    _write_file(runtime_dir / "leftover.json", {"a_ready": _pnr("Y"), "approval": _pnr("Y")}, mtime_s=old)
    store = SignalStore(runtime_dir, "st", scope={"a_ready", "b_ready"})
    store.start_run({"system_ready": Y})
    assert store.snapshot() == {"system_ready": Y, "approval": Y}
    # the own file was reset, not merged
    assert parse_signal_file(store.own_file.read_text()) == {"system_ready": Y}
    # a file written after the start counts, for every signal
    _write_file(runtime_dir / "container.json", {"a_ready": _pnr("Y")})
    store.refresh()
    assert store.get("a_ready") == Y


def test_stale_run_signal_in_external_json_does_not_come_back_on_the_next_signal_set(runtime_dir: Path) -> None:
    # someone set a_ready by hand in an earlier session; this run produces a_ready itself
    update_signal_file(runtime_dir, EXTERNAL_FILE, {"a_ready": Y, "approval": N})
    old = time.time() - 3600
    os.utime(runtime_dir / EXTERNAL_FILE, ns=(int(old * 1e9), int(old * 1e9)))
    store = SignalStore(runtime_dir, "ext", scope={"a_ready"})
    store.start_run({"system_ready": Y})
    assert store.get("a_ready").tv == "U" and store.get("approval").tv == "N"
    # `pnr signal set CONFIG approval --tv Y` rewrites external.json: a_ready must stay unknown
    update_signal_file(runtime_dir, EXTERNAL_FILE, {"approval": Y})
    store.refresh()
    assert store.get("approval").tv == "Y"
    assert store.get("a_ready").tv == "U"


def test_a_write_right_after_the_start_is_fresh(runtime_dir: Path) -> None:
    # file mtimes come from a coarse clock; a value written just after the start must still count
    for i in range(20):
        store = SignalStore(runtime_dir, f"fresh{i}", scope={f"s{i}"})
        store.start_run({"system_ready": Y})
        update_signal_file(runtime_dir, EXTERNAL_FILE, {f"s{i}": Y})
        store.refresh()
        assert store.get(f"s{i}").tv == "Y", i


# -- merge order ------------------------------------------------------------------------------------------


def test_newest_file_wins_for_a_name_both_contain(runtime_dir: Path) -> None:
    now = time.time()
    _write_file(runtime_dir / "a.json", {"s": _pnr("Y", "from a"), "only_a": _pnr("Y")}, mtime_s=now - 20)
    _write_file(runtime_dir / "b.json", {"s": _pnr("N", "from b")}, mtime_s=now - 10)
    store = SignalStore(runtime_dir, "order")
    store.refresh()
    assert store.get("s").response == ["from b"] and store.get("only_a").tv == "Y"
    os.utime(runtime_dir / "a.json", ns=(int(now * 1e9), int(now * 1e9)))  # a is now the newest
    store.refresh()
    assert store.get("s").response == ["from a"]
    (runtime_dir / "a.json").unlink()  # a removed: b's value is back
    store.refresh()
    assert store.get("s").response == ["from b"] and store.get("only_a").tv == "U"


def test_equal_mtimes_merge_in_name_order(runtime_dir: Path) -> None:
    t = time.time() - 5
    for name, tv in (("z.json", "N"), ("a.json", "Y")):
        _write_file(runtime_dir / name, {"s": _pnr(tv)}, mtime_s=t)
    state, _ = read_state(runtime_dir, "tie")
    assert state["s"].tv == "N"  # z.json sorts last, so it is applied last


def test_two_quick_writes_of_the_same_size_are_both_seen(runtime_dir: Path) -> None:
    store = SignalStore(runtime_dir, "quick")
    seen: list[str] = []
    store.subscribe(lambda name, _old, new: seen.append(f"{name}={new.tv}"))
    pinned = time.time_ns() - 10**9
    for tv in "YNYNY":
        update_signal_file(runtime_dir, EXTERNAL_FILE, {"s": PnR(tv=tv)})  # same size every time
        os.utime(runtime_dir / EXTERNAL_FILE, ns=(pinned, pinned))  # and the same mtime: one clock tick
        store.refresh()
    assert seen == ["s=Y", "s=N", "s=Y", "s=N", "s=Y"]


def test_set_writes_the_own_file_and_wait_wakes_on_a_file_change(runtime_dir: Path) -> None:
    store = SignalStore(runtime_dir, "wake", scope={"a_ready"})
    store.start_run({"system_ready": Y})
    store.set({"a_ready": N})
    assert parse_signal_file(store.own_file.read_text())["a_ready"] == N

    def later() -> None:
        time.sleep(0.2)
        update_signal_file(runtime_dir, "outside.json", {"go": Y})
        store.refresh()

    threading.Thread(target=later).start()
    assert store.wait(lambda: store.get("go").tv == "Y", timeout=10)
    assert not store.wait(lambda: store.get("never").tv == "Y", timeout=0.2)


# -- atomic writes --------------------------------------------------------------------------------------------


def test_atomic_write_leaves_the_old_file_when_serialising_fails(runtime_dir: Path) -> None:
    path = runtime_dir / "x.json"
    atomic_write_json(path, {"s": _pnr("Y")})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"s": object()})
    assert json.loads(path.read_text()) == {"s": _pnr("Y")}
    assert [p.name for p in runtime_dir.iterdir()] == ["x.json"]  # no temp file left


def test_cli_signal_set_rejects_bad_input_with_exit_2(tmp_path: Path, runtime_dir: Path) -> None:
    cfg = write_config(
        tmp_path / "d.json",
        {
            "name": "clibad",
            "cpuxs": {"x": {"design_chunks": [{"name": "a", "container": {"name": "clibad-a", "image": "busybox"}}]}},
        },
    )
    for args in (["ok_name", "--tv", "maybe"], ["bad name;rm", "--tv", "Y"]):
        r = pnr_cli("signal", "set", str(cfg), *args, "--runtime-dir", str(runtime_dir))
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr
    assert not (runtime_dir / EXTERNAL_FILE).exists()


def test_set_builds_on_its_last_write_yet_keeps_what_another_writer_put_in_the_own_file(tmp_path: Path) -> None:
    store = SignalStore(tmp_path, "d", scope={"a", "b"})
    store.start_run({"system_ready": Y})
    seen: list[str] = []
    store.subscribe(lambda name, _old, _new: seen.append(name))
    store.set({"a": Y})
    assert seen == ["a"]  # only what the write touched is merged again and reported
    own = tmp_path / own_file_name("d")
    update_signal_file(tmp_path, own.name, {"x": N})  # someone else rewrites the own file meanwhile
    store.set({"b": Y})
    assert (store.get("a").tv, store.get("b").tv, store.get("x").tv) == ("Y", "Y", "N")
    assert set(parse_signal_file(own.read_text())) == {"system_ready", "a", "b", "x"}
    lines = own.read_text().splitlines()  # one signal per line, for people and grep
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == 6 and '"b": {"prompt": ""' in lines[2]


def test_a_bring_up_fsyncs_its_signal_file_once_at_the_end(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside `deferred_fsync` every write still replaces the file atomically (a reader sees each value at once)
    but the fsync (20-40 ms on a busy disk, under the folder lock) is paid once, at the end; outside, per write."""
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = SignalStore(runtime_dir, "lazy")
    store.start_run({"system_ready": Y})
    synced.clear()
    with store.deferred_fsync():
        for i in range(10):
            store.set({f"s{i}": Y})
            assert read_state(runtime_dir, "lazy")[0][f"s{i}"].tv == "Y"  # on file at once, for other readers
        assert synced == []
    assert len(synced) == 1
    store.set({"after": N})
    assert len(synced) == 2
    with store.deferred_fsync():  # nothing written: nothing owed
        pass
    assert len(synced) == 2


def test_the_signal_file_is_rendered_from_cached_lines_and_reads_as_a_full_render(runtime_dir: Path) -> None:
    """A write re-renders only the values that changed; the file is byte for byte what a full render gives, also
    after someone else rewrote it (then it is read again) and after a value was removed."""
    from pnr.runtime.files import signal_file_text

    store = SignalStore(runtime_dir, "lines")
    store.start_run({"system_ready": Y})
    for i in range(30):
        store.set({f"s{i:02d}": Y if i % 2 else N})
    store.set({"s03": N, "s04": PnR(prompt="again?", response=["yes"], tv="Y")})
    update_signal_file(runtime_dir, own_file_name("lines"), {"s05": None, "theirs": Y})  # another writer
    store.set({"s06": Y})
    expected = {**{f"s{i:02d}": Y if i % 2 else N for i in range(30)}, "system_ready": Y, "theirs": Y}
    expected.update({"s03": N, "s04": PnR(prompt="again?", response=["yes"], tv="Y"), "s06": Y})
    del expected["s05"]
    text = (runtime_dir / own_file_name("lines")).read_text()
    assert text == signal_file_text({k: v.model_dump() for k, v in expected.items()})
    assert read_state(runtime_dir, "lines")[0] == expected


def test_refresh_merges_again_only_when_a_file_changed(runtime_dir: Path) -> None:
    store = SignalStore(runtime_dir, "quiet")
    store.start_run({"system_ready": Y})
    assert store.refresh() is False  # nothing changed since the run started
    update_signal_file(runtime_dir, EXTERNAL_FILE, {"outside": Y})
    assert store.refresh() is True and store.get("outside").tv == "Y"
    assert store.refresh() is False
    (runtime_dir / EXTERNAL_FILE).unlink()
    assert store.refresh() is True and store.get("outside").tv == "U"


def test_the_chunk_state_file_renders_only_changed_chunks_and_keeps_other_writers_chunks(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk-state file reads as what `json.dumps(..., sort_keys=True)` of the merged states gives; a write
    renders only the chunks whose state changed; a file another writer (another CPUX) changed is merged."""
    from pnr.runtime import ChunkStateFile, chunk_state

    ours, theirs = ChunkStateFile(runtime_dir, "d"), ChunkStateFile(runtime_dir, "d")
    states = {f"c{i:02d}": {"phase": "waiting", "detail": f"waits on {i}", "ready_at": None} for i in range(20)}
    ours.write(states, "run-1", pid=11)
    rendered: list[object] = []
    real_dumps = json.dumps
    monkeypatch.setattr(chunk_state.json, "dumps", lambda obj, **kw: rendered.append(obj) or real_dumps(obj, **kw))
    states["c03"] = {**states["c03"], "phase": "ready", "ready_at": 1.5}
    ours.write(states, "run-1", pid=11)
    assert states["c03"] in rendered and not any(states[n] in rendered for n in states if n != "c03")
    theirs.write({"x": {"phase": "ready"}}, "run-1", pid=11)  # the domain's other CPUX
    states["c04"] = {**states["c04"], "phase": "starting"}
    ours.write(states, "run-2", pid=12)
    expected = {"chunks": {**states, "x": {"phase": "ready"}}, "domain": "d", "flow_run_id": "run-2", "pid": 12}
    assert ours.path.read_text() == real_dumps(expected, sort_keys=True) + "\n"
    assert ours.read() == expected


def test_a_writer_that_replaces_the_chunk_state_file_right_after_ours_is_not_taken_for_ours(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer renames its file in place just after this object's rename: the next write must see a
    file it did not write and merge it (the stamp is taken before the rename, not by a stat afterwards)."""
    from pnr.runtime import ChunkStateFile, files

    ours, theirs = ChunkStateFile(runtime_dir, "d"), ChunkStateFile(runtime_dir, "d")
    ours.write({"a": {"phase": "waiting"}}, "run-1", pid=11)
    real_replace = files.os.replace
    interleaved: list[bool] = []

    def replace_then_let_the_other_writer_in(src: str, dst: object) -> None:
        real_replace(src, dst)
        if not interleaved:
            interleaved.append(True)
            theirs.write({"x": {"phase": "ready"}}, "run-1", pid=11)  # the domain's other CPUX

    monkeypatch.setattr(files.os, "replace", replace_then_let_the_other_writer_in)
    ours.write({"a": {"phase": "ready"}}, "run-1", pid=11)
    monkeypatch.setattr(files.os, "replace", real_replace)
    ours.write({"a": {"phase": "ready"}, "b": {"phase": "waiting"}}, "run-1", pid=11)
    assert interleaved and ours.chunks() == {
        "a": {"phase": "ready"},
        "b": {"phase": "waiting"},
        "x": {"phase": "ready"},
    }


def test_rendered_lines_render_only_changed_values_and_forget_names_that_are_gone() -> None:
    from pnr.runtime.files import RenderedLines

    calls: list[str] = []
    lines: RenderedLines[int] = RenderedLines(lambda name, v: calls.append(name) or f"{name}={v}", lambda a, b: a == b)
    assert lines.lines({"b": 2, "a": 1}) == ["a=1", "b=2"] and sorted(calls) == ["a", "b"]
    calls.clear()
    assert lines.lines({"a": 1, "b": 3}) == ["a=1", "b=3"] and calls == ["b"]
    assert lines.lines({"b": 3}) == ["b=3"]
    calls.clear()
    assert lines.lines({"a": 1, "b": 3}) == ["a=1", "b=3"] and calls == ["a"]  # "a" was forgotten


@pytest.mark.parametrize("command", [["status"], ["signal", "get"], ["up"]])
def test_a_runtime_folder_that_is_a_file_is_bad_input_not_a_traceback(tmp_path: Path, command: list[str]) -> None:
    """Before anything starts (no server, no container): --runtime-dir and PNR_RUNTIME_DIR alike."""
    cfg = write_config(
        tmp_path / "d.json",
        {
            "name": "rtfile",
            "cpuxs": {"x": {"design_chunks": [{"name": "a", "container": {"name": "rtfile-a", "image": "busybox"}}]}},
        },
    )
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    for args, env in (
        (["--runtime-dir", str(a_file)], {}),
        ([], {"PNR_RUNTIME_DIR": str(a_file), "PNR_STATE_DIR": str(tmp_path / "state")}),
    ):
        r = pnr_cli(*command, str(cfg), *args, env=env)
        assert r.returncode == 2, (command, args, r.stdout, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr
        assert f"{a_file} is a file" in r.stderr, r.stderr
    assert not (tmp_path / "state").exists()  # `pnr up` refused before it looked for a server
