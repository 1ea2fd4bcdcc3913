"""Paths and text the same on every OS: Windows drive paths in volumes, `~`, runtime files' line endings, configs
with a UTF-8 byte-order mark, output on a console that is not UTF-8."""

from __future__ import annotations

import _pyio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, write_config

from pnr.backend import daemon
from pnr.compose import import_compose
from pnr.engines.engine import Engine
from pnr.exceptions import ConfigError
from pnr.model import load_domain
from pnr.model.container import VolumeSpec, host_path, is_host_path, split_volume
from pnr.runtime import files

CHAIN = ROOT / "config" / "example_chain.json"
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="how a POSIX host keeps a Windows path")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("C:\\src:/src", VolumeSpec("C:\\src", "/src", None)),
        ("C:/src:/src", VolumeSpec("C:/src", "/src", None)),
        ("d:\\work\\app:/app:ro", VolumeSpec("d:\\work\\app", "/app", "ro")),
        ("./data:/data:rw", VolumeSpec("./data", "/data", "rw")),
        ("~/cache:/cache", VolumeSpec("~/cache", "/cache", None)),
        ("/srv/x:/x", VolumeSpec("/srv/x", "/x", None)),
        ("pgdata:/var/lib/postgresql/data", VolumeSpec("pgdata", "/var/lib/postgresql/data", None)),
    ],
)
def test_a_volume_splits_into_source_target_mode_whatever_the_platform(item: str, expected: VolumeSpec) -> None:
    assert split_volume(item) == expected


@pytest.mark.parametrize("item", ["C:\\src", "c:/x", "C:/src:src", "C:\\src:/src:rx", "a:/b:ro:x", ":/x", "C:"])
def test_a_malformed_volume_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="volume"):
        split_volume(item)


def test_a_drive_letter_is_a_path() -> None:
    assert is_host_path("C:\\src") and is_host_path("c:/src") and is_host_path("\\\\server\\share")
    assert not is_host_path("pgdata")


def _config(tmp_path: Path, volumes: list[str], **container: Any) -> Path:
    data = json.loads(CHAIN.read_text(encoding="utf-8"))
    first = data["cpuxs"]["chain_startup"]["design_chunks"][0]["container"]
    first.update(volumes=volumes, **container)
    return write_config(tmp_path / "c.json", data)


def test_a_config_with_windows_bind_mounts_loads(tmp_path: Path) -> None:
    domain = load_domain(_config(tmp_path, ["C:\\src:/src", "C:/data:/data:ro"]))
    assert domain.cpuxs["chain_startup"].design_chunks[0].container.volumes == ["C:\\src:/src", "C:/data:/data:ro"]


def test_a_bad_volume_names_the_file_and_the_json_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_domain(_config(tmp_path, ["C:\\src"]))
    text = str(caught.value)
    assert str(tmp_path / "c.json") in text and "design_chunks[0].container.volumes" in text, text
    assert "SOURCE:/container/path" in text, text


def test_tilde_and_relative_sources_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))  # what expanduser reads on Windows
    assert host_path("~/src", tmp_path) == str((home / "src").resolve())
    assert host_path("./data", tmp_path / "cfg") == str((tmp_path / "cfg" / "data").resolve())


@POSIX_ONLY
def test_a_windows_drive_path_is_passed_on_as_written_elsewhere(tmp_path: Path) -> None:
    assert host_path("C:\\src", tmp_path) == "C:\\src"
    assert host_path("C:/src", tmp_path) == "C:/src"


@pytest.mark.skipif(os.name != "nt", reason="resolving a drive path needs Windows")
def test_a_windows_drive_path_is_resolved_on_windows(tmp_path: Path) -> None:
    assert host_path("C:/src", tmp_path) == str(Path("C:\\src").resolve())


def test_the_engine_binds_expanded_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    engine = Engine(client=object(), host="unix:///nowhere.sock")
    assert engine._bind("~/src:/src:ro", "d", tmp_path) == f"{(home / 'src').resolve()}:/src:ro"
    assert engine._bind("./x:/x", "d", tmp_path) == f"{(tmp_path / 'x').resolve()}:/x"
    if os.name != "nt":
        assert engine._bind("C:\\src:/src", "d", tmp_path) == "C:\\src:/src"


class _Images:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def build(self, path: str, **_: Any) -> tuple[Any, list[Any]]:
        self.paths.append(path)
        return type("Image", (), {"id": "sha256:built"})(), []


def test_a_build_path_with_tilde_builds_from_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "ctx").mkdir(parents=True)
    (home / "ctx" / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    chunk = load_domain(_config(tmp_path, [], build_path="~/ctx")).cpuxs["chain_startup"].design_chunks[0]
    images = _Images()
    client = type("Client", (), {"images": images})()
    assert Engine(client=client, host="unix:///nowhere.sock").ensure_image("d", chunk, tmp_path, build=True)
    assert images.paths == [str((home / "ctx").resolve())]


def test_runtime_files_end_lines_with_newline_even_where_the_os_would_write_crlf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pure-Python io writes os.linesep for "\n" unless told otherwise, as Windows' text files do
    monkeypatch.setattr(os, "linesep", "\r\n")
    monkeypatch.setattr(files.os, "fdopen", lambda fd, *a, **k: _pyio.open(fd, *a, **k))
    path = tmp_path / "state.json"
    files.atomic_write_json(path, {"a": {"b": "c"}})
    raw = path.read_bytes()
    assert b"\r\n" not in raw and raw.count(b"\n") == 5, raw


def test_a_config_with_a_utf8_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + CHAIN.read_bytes())
    assert load_domain(path).name == load_domain(CHAIN).name
    done = subprocess.run(
        [sys.executable, "-m", "pnr.cli", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_output_on_a_console_that_is_not_utf8_replaces_what_it_cannot_show(tmp_path: Path, encoding: str) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        'services:\n  web:\n    image: nginx:1\n    environment:\n      GREETING: "café → ok"\n', "utf-8"
    )
    env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTHONUTF8": "0", "LANG": "C", "LC_ALL": "C"}
    done = subprocess.run(
        [sys.executable, "-m", "pnr.cli", "import", str(compose)], capture_output=True, env=env, timeout=120
    )
    out, err = done.stdout.decode(encoding), done.stderr.decode(encoding)
    assert done.returncode == 0 and "UnicodeEncodeError" not in err, out + err
    shown = "caf? ? ok" if encoding == "ascii" else "café ? ok"
    assert f'"GREETING": "{shown}"' in out, out


def test_pnr_import_keeps_a_windows_bind_mount_whole(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        "services:\n  web:\n    image: nginx:1\n    volumes:\n"
        '      - "C:\\\\src:/src:ro"\n      - "C:/data:/data"\n      - "~/cache:/cache"\n      - ./conf:/conf\n',
        encoding="utf-8",
    )
    domain = import_compose(compose, name="win", environ={}).domain
    container = domain["cpuxs"]["win"]["design_chunks"][0]["container"]
    assert container["volumes"] == ["C:\\src:/src:ro", "C:/data:/data", "~/cache:/cache", "./conf:/conf"]


def test_the_backend_pid_file_ends_lines_with_newline(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    daemon.write_pid_file(path, {"pid": 12, "url": "http://127.0.0.1:1"})
    raw = path.read_bytes()
    assert raw.endswith(b"}\n") and b"\r" not in raw, raw
    assert daemon.read_pid_file(path) == {"pid": 12, "url": "http://127.0.0.1:1"}
