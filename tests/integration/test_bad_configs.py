"""Core acceptance: a table of bad configs gets exit 2, no traceback, no container — through the real CLI."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_IMAGE, pnr_cli

C0 = "cpuxs.x.design_chunks[0]"
C1 = "cpuxs.x.design_chunks[1]"


def _chunk(name: str, port: int, gate: str = "system_ready", out: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "gatekeeper": {gate: {"prompt": f"is {gate}?", "response": ["yes"], "tv": "Y"}},
        "flowout": {out or f"{name}_ready": {"prompt": "", "response": ["yes"], "tv": "Y"}},
        "health_check": {"type": "tcp", "port_key": "8080", "timeout_seconds": 1},
        "container": {
            "name": f"NAME-{name}",
            "image": TEST_IMAGE,
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "ports": {"8080": str(port)},
        },
    }


BASE: dict[str, Any] = {"name": "NAME", "cpuxs": {"x": {"design_chunks": [_chunk("a", 41001)]}}}


def _c0(d: dict[str, Any]) -> dict[str, Any]:
    return d["cpuxs"]["x"]["design_chunks"][0]


def _add(d: dict[str, Any], c: dict[str, Any]) -> None:
    d["cpuxs"]["x"]["design_chunks"].append(c)


Mutation = Callable[[dict[str, Any]], Any]
# (id, mutation of a valid config, JSON path the error must name, words the message must contain)
TABLE: list[tuple[str, Mutation, str, str]] = [
    (
        "port_key_not_in_ports",
        lambda d: _c0(d)["health_check"].update(port_key="9999"),
        f"{C0}.health_check.port_key",
        "not a key of container.ports",
    ),
    ("unknown_key", lambda d: _c0(d)["container"].update(imgae="x"), f"{C0}.container.imgae", "did you mean 'image'"),
    (
        "tv_maybe",
        lambda d: _c0(d)["gatekeeper"]["system_ready"].update(tv="maybe"),
        f"{C0}.gatekeeper.system_ready.tv",
        "tv must be",
    ),
    (
        "unknown_probe_kind",
        lambda d: _c0(d)["health_check"].update(type="smoke"),
        f"{C0}.health_check",
        "unknown health check type 'smoke'",
    ),
    (
        "negative_timeout",
        lambda d: _c0(d)["health_check"].update(timeout_seconds=-1),
        f"{C0}.health_check.timeout_seconds",
        "greater than 0",
    ),
    (
        "absurd_deadline",
        lambda d: _c0(d)["health_check"].update(deadline_seconds=1e9),
        f"{C0}.health_check.deadline_seconds",
        "less than or equal to 86400",
    ),
    (
        "duplicate_chunk_name",
        lambda d: _add(d, {**_chunk("a", 41002), "container": {**_chunk("a", 41002)["container"], "name": "NAME-a2"}}),
        f"{C1}.name",
        "duplicate chunk name 'a'",
    ),
    (
        "cycle",
        lambda d: (_c0(d)["gatekeeper"].update({"b_ready": {"tv": "Y"}}), _add(d, _chunk("b", 41002, gate="a_ready"))),
        f"{C0}.gatekeeper",
        "cycle: a -> b -> a",
    ),
    ("empty_cpuxs", lambda d: d.update(cpuxs={}), "cpuxs", "at least 1"),
    ("missing_container", lambda d: _c0(d).pop("container"), f"{C0}.container", "required key is missing"),
    (
        "host_port_out_of_range",
        lambda d: _c0(d)["container"].update(ports={"8080": "70000"}),
        f"{C0}.container.ports",
        "out of range",
    ),
    (
        "shell_metachar_container_name",
        lambda d: _c0(d)["container"].update(name="x;rm -rf /"),
        f"{C0}.container.name",
        "not a valid container name",
    ),
    (
        "duplicate_host_port",
        lambda d: _add(d, _chunk("b", 41001)),
        f"{C1}.container.ports.8080",
        "already published by chunk 'a'",
    ),
    (
        "bad_image_reference",
        lambda d: _c0(d)["container"].update(image="busybox && reboot"),
        f"{C0}.container.image",
        "not a valid image reference",
    ),
    (
        "env_entry_without_equals",
        lambda d: _c0(d)["container"].update(env=["JUSTKEY"]),
        f"{C0}.container.env",
        "KEY=VALUE",
    ),
    (
        "command_wrong_type",
        lambda d: _c0(d)["container"].update(command=42),
        f"{C0}.container.command",
        "valid string or list",
    ),
    (
        "reserved_label",
        lambda d: _c0(d)["container"].update(labels={"io.pnr.domain": "other"}),
        f"{C0}.container.labels",
        "reserved",
    ),
    ("produces_system_ready", lambda d: _c0(d).update(flowout={"system_ready": {"tv": "Y"}}), C0, "set by pnr itself"),
]
RAW: list[tuple[str, str, str]] = [  # (id, file text, message words) — file-level errors have no JSON path
    ("malformed_json", '{"name": "NAME", "cpuxs": {', "invalid JSON at line 1"),
    ("cut_short_json", '{"name": "NAME", "cpuxs": {"a', "invalid JSON: unterminated string starting at line 1 column"),
    ("duplicate_json_key", '{"name": "NAME", "name": "NAME", "cpuxs": {}}', "name: key 'name' appears more than once"),
]


def _write(tmp_path: Path, case: str, mutate: Mutation | None, raw: str | None) -> tuple[Path, str]:
    domain = f"bad{uuid.uuid4().hex[:8]}"
    if raw is None:
        data = copy.deepcopy(BASE)
        assert mutate is not None
        mutate(data)
        text = json.dumps(data).replace("NAME", domain)
    else:
        text = raw.replace("NAME", domain)
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    return path, domain


def _check_refused(result: Any, path: Path, json_path: str, words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    where = f"{path}: {json_path}: " if json_path else f"{path}: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(where)]
    assert lines, f"no line starting {where!r} in:\n{result.stderr}"
    assert any(words in line for line in lines), (words, lines)


def _cases() -> list[Any]:
    return [pytest.param(case, m, p, w, None, id=case) for case, m, p, w in TABLE] + [
        pytest.param(case, None, "", w, raw, id=case) for case, raw, w in RAW
    ]


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    # otherwise every row below could fail for the wrong reason
    path, _ = _write(tmp_path, "base", lambda d: None, None)
    result = pnr_cli("validate", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case, mutate, json_path, words, raw", _cases())
def test_validate_refuses(
    tmp_path: Path, case: str, mutate: Mutation | None, json_path: str, words: str, raw: str | None
) -> None:
    path, _ = _write(tmp_path, case, mutate, raw)
    _check_refused(pnr_cli("validate", str(path)), path, json_path, words)


@pytest.mark.docker
@pytest.mark.parametrize("case, mutate, json_path, words, raw", _cases())
def test_up_refuses_and_creates_nothing(
    tmp_path: Path, docker_client: Any, case: str, mutate: Mutation | None, json_path: str, words: str, raw: str | None
) -> None:
    path, domain = _write(tmp_path, case, mutate, raw)
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    result = pnr_cli("up", str(path), "--runtime-dir", str(tmp_path / "rt"), "--timeout", "20", env=env)
    try:
        _check_refused(result, path, json_path, words)
        assert docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}) == []
        assert docker_client.containers.list(all=True, filters={"name": domain}) == []
        assert docker_client.networks.list(names=[f"pnr_{domain}"]) == []
        assert not (tmp_path / "rt").exists()  # not even a runtime folder
    finally:  # should anything have been created after all, remove exactly that
        for c in docker_client.containers.list(all=True, filters={"label": f"io.pnr.domain={domain}"}):
            c.remove(force=True)
        for n in docker_client.networks.list(filters={"label": f"io.pnr.domain={domain}"}):
            n.remove()
