"""Unit tests (no daemon) of config models, the loader's error paths, the plan and its renderings."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, write_config

from pnr.exceptions import ConfigError
from pnr.model import (
    DEFAULT_HOST_IP,
    ContainerSpec,
    Domain,
    HttpCheck,
    json_path,
    load_domain,
    parse_domain,
    parse_port,
)
from pnr.model.plan import PNR_ITSELF, make_plan

SEED = ROOT / "config" / "seed_example.json"


def chunk(
    name: str,
    *,
    gate: dict[str, str] | None = None,
    out: str | None = None,
    port: int | None = None,
    container: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": f"c-{name}", "image": "busybox:1", **(container or {})}
    data: dict[str, Any] = {
        "name": name,
        "gatekeeper": {s: {"tv": tv} for s, tv in (gate or {"system_ready": "Y"}).items()},
        "container": spec,
    }
    if out:
        data["flowout"] = {out: {"tv": "Y"}}
    if port is not None:
        spec.setdefault("ports", {"80": str(port)})
        data["health_check"] = {"type": "tcp", "port_key": "80"}
    return data


def domain(*chunks: dict[str, Any], name: str = "d", cpux: str = "x") -> dict[str, Any]:
    return {"name": name, "cpuxs": {cpux: {"design_chunks": list(chunks)}}}


def issues(data: Any, plan: bool = True) -> list[str]:
    """Every problem as 'path: message' (empty when the config is fine)."""
    try:
        dom = parse_domain(data, "f.json")
        if plan:
            make_plan(dom, "f.json")
    except ConfigError as exc:
        assert exc.source == "f.json"
        return [f"{i.path}: {i.message}" for i in exc.issues]
    return []


# -- models -------------------------------------------------------------------------------------------------


def test_seed_config_loads_verbatim_and_stores_tv_upper_case() -> None:
    dom = load_domain(SEED)
    c = dom.cpuxs["stack_startup"].design_chunks[0]
    assert (dom.name, c.name, c.container.name, c.container.image) == (
        "seed_example",
        "mongodb",
        "pnr_mongodb",
        "mongo:latest",
    )
    assert c.gatekeeper["system_ready"].tv == "Y" and c.flowout["mongodb_ready"].tv == "Y"
    assert c.health_check is not None and c.health_check.type == "tcp" and c.health_check.port_key == "27017"
    assert c.health_check.status_mapping.failure is not None and c.health_check.status_mapping.failure.tv == "N"
    assert c.container.port_bindings()["27017"].host_ip == DEFAULT_HOST_IP == "127.0.0.1"


@pytest.mark.parametrize("tv, stored", [("y", "Y"), ("Y", "Y"), ("n", "N"), ("N", "N"), ("u", "U"), ("U", "U")])
def test_tv_any_case_is_stored_upper(tv: str, stored: str) -> None:
    dom = parse_domain(domain(chunk("a", gate={"go": tv})))
    assert dom.cpuxs["x"].design_chunks[0].gatekeeper["go"].tv == stored


def test_container_env_list_and_map_give_the_same_environment() -> None:
    as_list = ContainerSpec(name="ab", image="x", env=["A=1", "B=x=y", "C="])
    as_map = ContainerSpec(name="ab", image="x", env={"A": 1, "B": "x=y", "C": ""})
    assert as_list.env_map() == as_map.env_map() == {"A": "1", "B": "x=y", "C": ""}
    assert ContainerSpec(name="ab", image="x", env={"T": True, "F": 1.5}).env_map() == {"T": "true", "F": "1.5"}


def test_command_string_is_split_into_arguments_never_run_by_a_shell() -> None:
    assert ContainerSpec(name="ab", image="x", command="sh -c 'echo $HOME; ls'").command_args() == [
        "sh",
        "-c",
        "echo $HOME; ls",
    ]
    assert ContainerSpec(name="ab", image="x", command=["a b", "c"]).command_args() == ["a b", "c"]
    assert ContainerSpec(name="ab", image="x").command_args() is None


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("8080", "18080", ("127.0.0.1", 18080, 8080, "tcp")),
        ("8080", 18080, ("127.0.0.1", 18080, 8080, "tcp")),
        ("8080/udp", "127.0.0.1:9", ("127.0.0.1", 9, 8080, "udp")),
        ("80", "0.0.0.0:8080", ("0.0.0.0", 8080, 80, "tcp")),
        ("80", "localhost:8080", ("127.0.0.1", 8080, 80, "tcp")),
        ("80", "[::1]:8080", ("::1", 8080, 80, "tcp")),
    ],
)
def test_port_forms_and_the_127_0_0_1_default(key: str, value: Any, expected: tuple[Any, ...]) -> None:
    b = parse_port(key, value)
    assert (b.host_ip, b.host_port, b.container_port, b.protocol) == expected


def test_volumes_and_build_path_without_image() -> None:
    spec = ContainerSpec(name="ab", build_path="./app", volumes=["./data:/data", "/abs:/x:ro", "named_vol:/v:rw"])
    assert spec.image is None and spec.build_path == "./app" and len(spec.volumes) == 3
    with pytest.raises(ValueError, match="give 'image'"):
        ContainerSpec(name="ab")


def test_legacy_flowin_and_status_are_accepted_and_ignored() -> None:
    data = domain(chunk("a"))
    data["cpuxs"]["x"]["design_chunks"][0].update(flowin={"anything": [1, 2]}, status="completed")
    plan = make_plan(parse_domain(data))
    assert plan.levels == {"x": [["a"]]}  # a 'completed' status does not skip the chunk


def test_http_check_defaults() -> None:
    check = HttpCheck(type="http", port_key="80")
    assert (check.path, check.expected_code, check.timeout_seconds, check.body_contains) == ("/", 200, 2.0, None)
    assert check.code_ok(200) and not check.code_ok(404)


# -- loader errors: file and JSON path -----------------------------------------------------------------------


def test_errors_name_the_file_and_the_json_path(tmp_path: Path) -> None:
    data = domain(chunk("a", port=1234))
    data["cpuxs"]["x"]["design_chunks"][0]["health_check"]["timeout_seconds"] = -1
    data["cpuxs"]["x"]["design_chunks"][0]["container"]["imgae"] = "typo"
    path = write_config(tmp_path / "bad.json", data)
    with pytest.raises(ConfigError) as info:
        load_domain(path)
    text = str(info.value)
    assert f"{path}: cpuxs.x.design_chunks[0].health_check.timeout_seconds: " in text
    assert f"{path}: cpuxs.x.design_chunks[0].container.imgae: unknown key 'imgae'; did you mean 'image'?" in text


@pytest.mark.parametrize(
    "loc, path",
    [
        (
            ("cpuxs", "x", "design_chunks", 0, "health_check", "tcp", "port_key"),
            "cpuxs.x.design_chunks[0].health_check.port_key",
        ),
        (
            ("cpuxs", "x", "design_chunks", 0, "container", "ports", "8080/tcp", "str"),
            "cpuxs.x.design_chunks[0].container.ports.8080/tcp",
        ),
        (("cpuxs", "a b", "[key]"), 'cpuxs["a b"]'),
        (("cpuxs", "x\ud800"), 'cpuxs["x\\ud800"]'),
        (("name",), "name"),
        # a key is bare only when it is a name or a whole number (a port); everything else is quoted, whatever it
        # looks like, so `file: path: message` stays one line
        (("0\n",), '["0\\n"]'),
        (("a\n",), '["a\\n"]'),
        (("0 ",), '["0 "]'),
        (("-1",), '["-1"]'),
        (("1e3",), '["1e3"]'),
        (("",), '[""]'),
        (("env", "a.b"), 'env["a.b"]'),
        (("ports", "8080"), "ports.8080"),
        (("env", "DB_URL"), "env.DB_URL"),
    ],
)
def test_json_path_rendering(loc: tuple[Any, ...], path: str) -> None:
    assert json_path(loc) == path


def test_duplicate_json_keys_are_an_error_with_their_path(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text(
        '{"name": "a", "cpuxs": {"x": {"design_chunks": [{"name": "a", "name": "b", '
        '"container": {"name": "ab", "image": "x"}}]}}}'
    )
    with pytest.raises(ConfigError) as info:
        load_domain(path)
    assert (
        str(info.value)
        == f"{path}: cpuxs.x.design_chunks[0].name: key 'name' appears more than once in the same object"
    )


@pytest.mark.parametrize(
    "container, needle",
    [
        ({"name": "a"}, "container.name: container name 'a' is too short"),
        ({"image": "Mongo Latest"}, "container.image: image 'Mongo Latest' is not a valid image reference"),
        ({"image": "x;reboot"}, "not a valid image reference"),
        ({"volumes": ["bad name:/x"]}, "container.volumes: volume source 'bad name'"),
        ({"ports": {"80": "300.1.1.1:80"}}, "container.ports: host address '300.1.1.1'"),
        ({"ports": {"80": True}}, "container.ports.80: Input should be a valid string or integer"),
        ({"command": ["a\u0000b"]}, "container.command[0]: value contains a NUL character"),
    ],
)
def test_container_values_docker_would_reject_are_config_errors(container: dict[str, Any], needle: str) -> None:
    got = issues(domain(chunk("a", container=container)))
    assert any(needle in line for line in got), got


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "pnr-test/busybox:1",
        "localhost:5000/a/b_c:1.2-x",
        "python:3.12-slim",
        "redis@sha256:" + "a" * 64,
        "reg.example.com/team/app",
    ],
)
def test_valid_image_references_pass(image: str) -> None:
    assert issues(domain(chunk("a", container={"image": image}))) == []


def test_issue_count_is_capped() -> None:
    data = domain(*[{"name": f"n{i}", "oops": 1, "container": {"name": f"c{i}", "image": "x"}} for i in range(200)])
    got = issues(data)
    assert len(got) == 51 and got[-1] == ": ... and 150 more problems"


# -- plan ---------------------------------------------------------------------------------------------------


def _chain() -> dict[str, Any]:
    return domain(
        chunk("web", gate={"api_ready": "Y"}, out="web_ready"),
        chunk("api", gate={"db_ready": "Y", "approval": "y"}, out="api_ready"),
        chunk("db", out="db_ready", port=5432),
        chunk("side", gate={"db_ready": "Y"}),
    )


def test_plan_producers_consumers_external_and_levels() -> None:
    plan = make_plan(parse_domain(_chain()))
    assert plan.producers["system_ready"] == [PNR_ITSELF]
    assert plan.producers["db_ready"] == ["db"] and plan.producers["api_ready"] == ["api"]
    assert plan.consumers["db_ready"] == ["api", "side"]
    assert plan.external == ["approval"]
    assert plan.depends_on == {"web": ["api"], "api": ["db"], "db": [], "side": ["db"]}
    assert plan.levels == {"x": [["db"], ["api", "side"], ["web"]]}
    assert plan.cpux_order == ["x"]


def test_cpux_order_follows_signals_across_cpuxs() -> None:
    data = {
        "name": "d",
        "cpuxs": {
            "second": {"design_chunks": [chunk("b", gate={"a_ready": "Y"})]},
            "first": {"design_chunks": [chunk("a", out="a_ready")]},
        },
    }
    assert make_plan(parse_domain(data)).cpux_order == ["first", "second"]


def test_cycle_is_reported_as_a_path() -> None:
    got = issues(
        domain(chunk("a", gate={"b_ready": "Y"}, out="a_ready"), chunk("b", gate={"a_ready": "Y"}, out="b_ready"))
    )
    assert got == [
        "cpuxs.x.design_chunks[0].gatekeeper: the signal graph has a cycle: a -> b -> a; no chunk in it can ever start"
    ]


def test_self_wait_duplicate_names_ports_and_port_key() -> None:
    assert (
        "waits on 'a_ready', which only it produces"
        in issues(domain(chunk("a", gate={"a_ready": "Y"}, out="a_ready")))[0]
    )
    got = issues(domain(chunk("a"), chunk("a", container={"name": "other"})))
    assert got == [
        "cpuxs.x.design_chunks[1].name: duplicate chunk name 'a' (also at cpuxs.x.design_chunks[0]); "
        "chunk names must be unique in a domain"
    ]
    got = issues(domain(chunk("a"), chunk("b", container={"name": "c-a"})))
    assert got == ["cpuxs.x.design_chunks[1].container.name: duplicate container name 'c-a' (also used by chunk 'a')"]
    got = issues(domain(chunk("a", port=8080), chunk("b", container={"ports": {"81": "0.0.0.0:8080"}})))
    assert got == [
        "cpuxs.x.design_chunks[1].container.ports.81: host port 8080 is already published by chunk 'a'; "
        "pick another host port"
    ]
    # other address, or other protocol: no clash
    assert (
        issues(
            domain(chunk("a", port=8080), chunk("b", container={"ports": {"81": "127.0.0.2:8080", "82/udp": "8080"}}))
        )
        == []
    )
    data = domain(chunk("a", port=8080))
    data["cpuxs"]["x"]["design_chunks"][0]["health_check"]["port_key"] = "9999"
    assert issues(data)[0].startswith(
        "cpuxs.x.design_chunks[0].health_check.port_key: '9999' is not a key of container.ports (80)"
    )


def test_a_chunk_cannot_produce_system_ready() -> None:
    assert "'system_ready' is set by pnr itself" in issues(domain(chunk("a", out="system_ready")))[0]


def test_renderings() -> None:
    plan = make_plan(parse_domain(_chain()))
    text = plan.render_text()
    assert text.splitlines()[:3] == ["domain d", "  cpux x", "    level 0"]
    assert "api                  waits on db_ready=Y, approval=Y; produces api_ready" in text
    assert "approval  <- pnr signal set CONFIG approval --tv Y   (waited on by api)" in text
    data = json.loads(plan.render_json())
    assert data["levels"] == {"x": [["db"], ["api", "side"], ["web"]]}
    assert data["signals"]["approval"] == {"producers": [], "consumers": ["api"], "external": True}
    assert data["chunks"]["web"]["depends_on"] == ["api"]
    mermaid = plan.render_mermaid().splitlines()
    assert mermaid[0] == "flowchart LR"
    assert '  ext_approval(["approval (external)"])' in mermaid
    assert "  c2 -- db_ready --> c1" in mermaid and "  pnr -- system_ready --> c2" in mermaid


def test_big_config_plans_quickly_enough_not_to_hang() -> None:
    # 1000 chunks all waiting on one signal all of them produce: the worst case for the graph (a cycle)
    data = domain(
        *[chunk(f"n{i}", gate={"s": "Y"}, out="s", container={"ports": {"80": str(2000 + i)}}) for i in range(1000)]
    )
    assert "cycle" in issues(data)[0]
    data["cpuxs"]["x"]["design_chunks"].append(chunk("one_more"))
    assert issues(data, plan=False) == [": 1001 design chunks; a domain may have at most 1000"]


# -- schema -------------------------------------------------------------------------------------------------


def test_schema_command_prints_the_committed_schema() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "pnr.cli", "schema"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert printed.returncode == 0, printed.stderr
    schema = json.loads(printed.stdout)
    assert schema == Domain.model_json_schema()
    assert schema["title"] == "pnr domain config" and schema["additionalProperties"] is False
    committed = json.loads((ROOT / "pnr" / "model" / "schema.json").read_text())
    assert committed == schema, "pnr/model/schema.json is out of date: run `pnr schema > pnr/model/schema.json`"


def test_seed_is_valid_against_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    seed = json.loads(SEED.read_text())
    jsonschema.validate(seed, Domain.model_json_schema())
    bad = copy.deepcopy(seed)
    bad["cpuxs"]["stack_startup"]["design_chunks"][0]["container"]["imgae"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, Domain.model_json_schema())


def test_every_setting_is_documented_in_the_config_reference() -> None:
    from dataclasses import fields

    from pnr.settings import PnrSettings

    text = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    table = text.split("## Settings (environment)", 1)[1]
    documented = set(re.findall(r"^\| `(PNR_[A-Z_]+)` \|", table, re.M))
    assert documented == {f"PNR_{f.name.upper()}" for f in fields(PnrSettings)}


def test_settings_come_from_the_environment_and_a_bad_value_names_its_variable() -> None:
    from pnr.exceptions import ConfigError
    from pnr.settings import PnrSettings

    env = {"PNR_TIMEOUT_SECONDS": "12.5", "PNR_RUNNER": "off", "PNR_SERVER_PORT": "4311", "PNR_STATE_DIR": ""}
    settings = PnrSettings.from_env(env)
    assert (settings.timeout_seconds, settings.runner, settings.server_port) == (12.5, False, 4311)
    assert settings.state_dir is None and settings.runtime_dir == Path("runtime")  # empty and unset: defaults
    with pytest.raises(ConfigError) as caught:
        PnrSettings.from_env({"PNR_TIMEOUT_SECONDS": "0", "PNR_SERVER_PORT": "70000", "PNR_HEARTBEAT": "maybe"})
    text = str(caught.value)
    for fragment in ("PNR_TIMEOUT_SECONDS", "greater than 0", "PNR_SERVER_PORT", "below 65536", "PNR_HEARTBEAT"):
        assert fragment in text, text


def test_a_runs_settings_are_the_clients_when_it_sent_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the resident runner applies to a `pnr up` it runs: the client's environment, not its own; a bad
    value there (the client checked it) means the default; this process's own bad value stays an error."""
    from pnr.exceptions import ConfigError
    from pnr.settings import run_settings

    monkeypatch.setenv("PNR_TIMEOUT_SECONDS", "999")
    client = run_settings({"PNR_TIMEOUT_SECONDS": "8", "PNR_GATE_SLICE_SECONDS": "1", "PNR_CHUNK_EVENTS": "off"})
    assert (client.timeout_seconds, client.gate_slice_seconds, client.chunk_events) == (8, 1, False)
    assert run_settings({"PNR_TIMEOUT_SECONDS": "soon"}).timeout_seconds == 300
    assert run_settings(None).timeout_seconds == 999
    monkeypatch.setenv("PNR_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError):
        run_settings(None)


def test_up_with_a_cpux_the_config_lacks_is_exit_2_before_anything_runs(tmp_path: Path) -> None:
    from conftest import pnr_cli

    cfg = ROOT / "config" / "dev_stack.json"
    plan = make_plan(parse_domain(json.loads(cfg.read_text())), str(cfg))
    assert plan.cpuxs_to_run(None) == plan.cpux_order
    with pytest.raises(ConfigError, match="no cpux named 'nope'; the config has"):
        plan.cpuxs_to_run("nope")
    state = tmp_path / "state"
    r = pnr_cli("up", str(cfg), "--cpux", "nope", env={"PNR_STATE_DIR": str(state)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.startswith(f"{cfg}: cpuxs: no cpux named 'nope'"), (r.stdout, r.stderr)
    assert not state.exists()  # no server was started for it


def test_a_gate_signal_one_typo_from_a_produced_one_gets_a_did_you_mean(tmp_path: Path) -> None:
    from conftest import pnr_cli

    domain = {
        "name": "typo",
        "cpuxs": {
            "x": {
                "design_chunks": [
                    {
                        "name": "db",
                        "container": {"name": "typo-db", "image": "busybox"},
                        "flowout": {"db_healthy": {"tv": "Y"}},
                    },
                    {
                        "name": "app",
                        "container": {"name": "typo-app", "image": "busybox"},
                        "gatekeeper": {"db_helthy": {"tv": "Y"}, "approval": {"tv": "Y"}},
                    },
                ]
            }
        },
    }
    plan = make_plan(parse_domain(domain))
    assert plan.near_miss("db_helthy") == " (did you mean db_healthy?)"
    assert plan.near_miss("approval") == ""  # a real external signal: no hint
    cfg = write_config(tmp_path / "typo.json", domain)
    out = pnr_cli("validate", str(cfg))
    assert out.returncode == 0 and "db_helthy --tv Y) (did you mean db_healthy?)" in out.stdout, out.stdout
    assert "did you mean" in pnr_cli("plan", str(cfg)).stdout


def test_validate_of_a_yaml_file_points_to_pnr_import(tmp_path: Path) -> None:
    from conftest import pnr_cli

    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text("services:\n  web:\n    image: busybox\n")
    r = pnr_cli("validate", str(compose_file))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"`pnr import {compose_file} -o domain.json` translates a compose file" in r.stderr, r.stderr


def test_a_truth_value_in_any_case_loads_and_a_word_is_reported_as_written() -> None:
    def domain(tv: str) -> dict[str, Any]:
        chunk = {"name": "a", "container": {"name": "tvx-a", "image": "busybox"}, "flowout": {"a_ok": {"tv": tv}}}
        return {"name": "tvx", "cpuxs": {"x": {"design_chunks": [chunk]}}}

    assert parse_domain(domain("y")).cpuxs["x"].design_chunks[0].flowout["a_ok"].tv == "Y"
    with pytest.raises(ConfigError) as info:
        parse_domain(domain("yes"))
    assert "flowout.a_ok.tv: tv must be 'Y', 'N' or 'U' (any case), not 'yes'" in str(info.value), str(info.value)


def test_one_rule_maps_errors_to_exit_status() -> None:
    from pnr.exceptions import EngineError, PnrError, RunError, exit_status_of

    assert exit_status_of(ConfigError("f.json", [])) == 2
    assert [exit_status_of(e) for e in (EngineError("x"), RunError("x"), PnrError("x"))] == [1, 1, 1]
    assert exit_status_of(KeyboardInterrupt()) == 130
    assert exit_status_of(ValueError("x")) == 1
