"""Configs that used to pass validation and surprise at run time, messages that said too little, problems
reported one kind per run, and the names of flow runs and deployments. No engine, no Prefect server."""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, pnr_cli, write_config

from pnr.engines import LABEL_CONFIG, LABEL_DOMAIN, LABEL_MANAGED, other_configs
from pnr.exceptions import ConfigError
from pnr.model import load_plan
from pnr.model.loader import parse_domain
from pnr.model.plan import plan_issues
from pnr.prefect.flows import run_labels, run_source

SEED: dict[str, Any] = json.loads((ROOT / "config" / "seed_example.json").read_text())
C0 = "cpuxs.stack_startup.design_chunks[0]"


def _seed() -> dict[str, Any]:
    return copy.deepcopy(SEED)


def _chunk(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    chunk: dict[str, Any] = doc["cpuxs"]["stack_startup"]["design_chunks"][i]
    return chunk


def _issues(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_domain(doc, "f.json", rest=plan_issues)
    return {i.path: i.message for i in info.value.issues}


# -- a gate without tv -------------------------------------------------------------------------------------


def test_a_gate_without_tv_is_an_error_that_says_to_add_tv_y() -> None:
    doc = _seed()
    _chunk(doc)["gatekeeper"] = {"db_ready": {}}
    issues = _issues(doc)
    message = issues[f"{C0}.gatekeeper.db_ready.tv"]
    assert 'add "tv": "Y"' in message and "open at once" in message


def test_a_gate_that_says_u_on_purpose_stays_valid() -> None:
    doc = _seed()
    _chunk(doc)["gatekeeper"] = {"maintenance": {"tv": "u"}}
    assert parse_domain(doc).cpuxs["stack_startup"].design_chunks[0].gatekeeper["maintenance"].tv == "U"


def test_flowout_and_on_start_keep_their_default_tv() -> None:
    doc = _seed()
    _chunk(doc)["on_start"] = {"mongodb_started": {"prompt": "started?"}}
    assert parse_domain(doc).cpuxs["stack_startup"].design_chunks[0].on_start["mongodb_started"].tv == "U"


# -- a flowout signal that nothing writes --------------------------------------------------------------------


def _plan_issues(doc: dict[str, Any]) -> dict[str, str]:
    return {i.path: i.message for i in plan_issues(parse_domain(doc), "f.json")}


def test_without_a_success_mapping_the_passed_probe_writes_the_flowout_so_the_config_is_valid() -> None:
    doc = _seed()
    del _chunk(doc)["health_check"]["status_mapping"]
    assert _plan_issues(doc) == {}


def test_a_flowout_signal_under_another_key_of_the_mapping_is_an_error() -> None:
    doc = _seed()
    _chunk(doc)["health_check"]["status_mapping"]["success"]["key"] = "mongo_up"
    message = _plan_issues(doc)[f"{C0}.flowout.mongodb_ready"]
    assert "nothing writes it (its status_mapping.success writes 'mongo_up')" in message
    assert 'set the success mapping\'s "key" to "mongodb_ready"' in message


def test_a_flowout_signal_written_by_another_chunk_stays_valid() -> None:
    doc = _seed()
    chunks = doc["cpuxs"]["stack_startup"]["design_chunks"]
    chunks[0]["health_check"]["status_mapping"]["success"]["key"] = "mongo_up"
    helper = copy.deepcopy(chunks[0])
    helper.update(name="announcer", gatekeeper={}, flowout={"mongodb_ready": {"tv": "y"}})
    helper.pop("health_check")
    helper["container"].update(name="announcer", ports={})
    chunks.append(helper)
    assert _plan_issues(doc) == {}


# -- type errors say what was given and what to write ------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("health_check.timeout_seconds", "5", 'Input should be a valid number, not "5" (a string); write it without'),
        ("health_check.timeout_seconds", True, "not true (a boolean); write a number, e.g. 5"),
        ("container.name", 5, 'not 5 (a number); put it in quotes: "5"'),
        ("container.ports", "27017", 'not "27017" (a string); write a JSON object'),
        ("kind", "daemon", "Input should be 'service' or 'job', not \"daemon\" (a string)"),
    ],
)
def test_a_wrong_type_names_the_value_given_and_the_fix(where: str, value: Any, expected: str) -> None:
    doc = _seed()
    node = _chunk(doc)
    *parents, key = where.split(".")
    for part in parents:
        node = node[part]
    node[key] = value
    issues = _issues(doc)
    assert expected in issues[f"{C0}.{where}"], issues


def test_a_long_value_is_cut_in_the_message() -> None:
    doc = _seed()
    _chunk(doc)["container"]["name"] = list(range(100))
    message = _issues(doc)[f"{C0}.container.name"]
    assert "..." in message and len(message) < 200


# -- every problem of a file in one run --------------------------------------------------------------------


def _seven_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Seven problems of five kinds: three the schema finds, four only the plan's checks find."""
    first = _chunk(doc)
    first["health_check"]["timeout_seconds"] = "2"  # 1. a number in quotes
    first["health_check"]["intreval_seconds"] = 1  # 2. a typo
    second = copy.deepcopy(first)
    del second["health_check"]["intreval_seconds"]
    second["health_check"]["timeout_seconds"] = 2
    second["name"] = "mongo2"
    second["container"]["name"], second["container"]["ports"] = "pnr_mongo2", {"27017": "27018"}
    second["gatekeeper"] = {"mongodb_ready": {"prompt": "is mongodb ready?"}}  # 3. a gate without tv
    second["flowout"] = {"mongo2_ready": {"tv": "Y"}}
    second["health_check"]["status_mapping"] = {"success": {"key": "mongo2_ready", "tv": "Y"}}
    second["health_check"]["port_key"] = "28017"  # 4. not a key of its ports
    third = copy.deepcopy(second)
    third["gatekeeper"] = {"mongo2_ready": {"tv": "Y"}}
    third["name"] = "mongo3"
    third["flowout"] = {"mongo3_ready": {"tv": "Y"}}
    third["health_check"]["status_mapping"] = {"success": {"key": "mongo3_ready", "tv": "Y"}}
    third["health_check"]["port_key"] = "27017"
    third["container"]["name"], third["container"]["ports"] = "pnr_mongodb", {"27017": "27017"}
    # 5. the container name of the first chunk, 6. its host port, 7. an env reference to no chunk
    third["container"]["env"] = {"PEER": "${chunk:mongo9.host}"}
    doc["cpuxs"]["stack_startup"]["design_chunks"] += [second, third]
    return doc


def test_a_file_with_seven_problems_reports_all_seven_in_one_run(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "seven.json", _seven_problems(_seed()))
    with pytest.raises(ConfigError) as info:
        load_plan(str(cfg))
    found = {i.path: i.message for i in info.value.issues}
    c1, c2 = C0.replace("[0]", "[1]"), C0.replace("[0]", "[2]")
    assert set(found) == {
        f"{C0}.health_check.timeout_seconds",
        f"{C0}.health_check.intreval_seconds",
        f"{c1}.gatekeeper.mongodb_ready.tv",
        f"{c1}.health_check.port_key",
        f"{c2}.container.name",
        f"{c2}.container.ports.27017",
        f"{c2}.container.env.PEER",
    }, found
    assert "did you mean 'interval_seconds'" in found[f"{C0}.health_check.intreval_seconds"]
    assert "duplicate container name 'pnr_mongodb'" in found[f"{c2}.container.name"]
    assert "no chunk named 'mongo9'" in found[f"{c2}.container.env.PEER"]

    out = pnr_cli("validate", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith(f"{cfg}: ")]) == 7, out.stderr


def test_a_reference_to_a_chunk_with_problems_of_its_own_is_not_a_second_problem() -> None:
    doc = _seed()
    peer = copy.deepcopy(_chunk(doc))
    peer["name"], peer["container"]["name"] = "peer", "pnr_peer"
    peer["container"]["ports"] = {"27017": "27018"}
    del peer["container"]  # the chunk cannot be repaired: it is left out of the plan's checks
    _chunk(doc)["container"]["env"] = {"PEER": "${chunk:peer.host}"}
    doc["cpuxs"]["stack_startup"]["design_chunks"].append(peer)
    assert list(_issues(doc)) == [C0.replace("[0]", "[1]") + ".container"]


def test_a_key_taken_out_for_the_plan_checks_causes_no_second_problem() -> None:
    doc = _seed()
    _chunk(doc)["container"]["ports"] = "27017"  # removed: the health check's port_key then names no port
    assert list(_issues(doc)) == [f"{C0}.container.ports"]
    _chunk(doc)["health_check"]["type"] = "tcpp"
    assert set(_issues(doc)) == {f"{C0}.container.ports", f"{C0}.health_check"}


def test_plan_problems_keep_the_json_path_of_their_chunk_after_an_invalid_one() -> None:
    doc = _seed()
    bad = copy.deepcopy(_chunk(doc))
    bad["name"], bad["kind"] = "bad", 3
    clash = copy.deepcopy(_chunk(doc))
    clash["name"] = "clash"  # the same container name as chunk 0
    doc["cpuxs"]["stack_startup"]["design_chunks"] = [_chunk(doc), bad, clash]
    issues = _issues(doc)
    assert C0.replace("[0]", "[2]") + ".container.name" in issues, issues


# -- example domains and the config file that made a domain ------------------------------------------------


def test_example_configs_have_unique_domain_names() -> None:
    names: dict[str, list[str]] = {}
    for path in sorted((ROOT / "config").rglob("*.json")):
        names.setdefault(json.loads(path.read_text())["name"], []).append(str(path.relative_to(ROOT)))
    shared = {name: files for name, files in names.items() if len(files) > 1}
    assert not shared, f"example configs share a domain name: {shared}"


def _labels(domain: str, config: str | None) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_DOMAIN: domain, **({LABEL_CONFIG: config} if config else {})}


def test_other_configs_counts_containers_of_the_domain_made_from_another_file() -> None:
    labels = [
        _labels("d", "/a/one.json"),
        _labels("d", "/a/two.json"),
        _labels("d", "/a/two.json"),
        _labels("d", None),  # made before pnr remembered its config: no complaint
        _labels("e", "/a/three.json"),  # another domain
        {LABEL_DOMAIN: "d", LABEL_CONFIG: "/a/four.json"},  # not pnr's
    ]
    assert other_configs(labels, "d", "/a/one.json") == {"/a/two.json": 2}
    assert other_configs(labels[:1] + labels[3:], "d", "/a/one.json") == {}


# -- prefect.yaml ------------------------------------------------------------------------------------------


def _deployments() -> list[dict[str, Any]]:
    deployments: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    return deployments


def test_prefect_deploy_name_flow_slash_deployment_picks_exactly_one() -> None:
    from prefect.cli.deploy._config import _filter_matching_deploy_config

    configs = _deployments()
    for flow in ("pnr-up", "pnr-down"):
        for name in ("example-chain", "dev-stack", "seed-example"):
            matched = _filter_matching_deploy_config(f"{flow}/{name}", configs)
            assert len(matched) == 1, (flow, name, matched)


def test_prefect_yaml_entrypoints_exist_and_are_the_flows() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pnr_flows", ROOT / "flows" / "pnr_flows.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for dep in _deployments():
        path, func = dep["entrypoint"].split(":")
        assert path == "flows/pnr_flows.py"
        flow = getattr(module, func)
        assert flow.name.replace("-", "_") == func, dep["name"]


def test_prefect_yaml_leaves_the_timeout_to_the_worker_setting() -> None:
    for dep in _deployments():
        assert "timeout_seconds" not in dep.get("parameters", {}), dep["name"]


def test_prefect_yaml_tags_each_deployment_with_its_config_domain() -> None:
    for dep in _deployments():
        domain = json.loads((ROOT / dep["parameters"]["config_path"]).read_text())["name"]
        assert f"domain:{domain}" in dep["tags"], dep["name"]


# -- flow run names and tags -------------------------------------------------------------------------------


def _run(**fields: Any) -> Any:
    base = {"deployment_id": None, "auto_scheduled": False, "created_by": None, "tags": []}
    return types.SimpleNamespace(**{**base, **fields})


@pytest.mark.parametrize(
    ("run", "source"),
    [
        (_run(), "cli"),
        (_run(deployment_id="d1"), "deployment"),
        (_run(deployment_id="d1", auto_scheduled=True), "schedule"),
        (_run(deployment_id="d1", created_by=types.SimpleNamespace(type="AUTOMATION")), "automation"),
    ],
)
def test_run_source_tells_what_started_a_flow_run(run: Any, source: str) -> None:
    assert run_source(run) == source


def test_run_labels_name_the_domain_and_keep_other_tags_but_a_stale_domain_tag() -> None:
    run = _run(deployment_id="d1", tags=["pnr", "bring-up", "domain:example_chain"])
    assert run_labels("t123", run) == ("t123 · deployment", ["bring-up", "deployment", "domain:t123", "pnr"])


# -- before anything starts: every missing image, and the config file that made the domain -----------------


def _fake_run(tmp_path: Path, missing: bool = False, force: bool = False) -> tuple[Any, Any]:
    from pnr.engines import EngineSet
    from pnr.exceptions import ImageError
    from unit.test_engines import FakeEngine, make_run, two_engine_plan

    class NoImages(FakeEngine):
        def ensure_image(self, domain: str, chunk: Any, base_dir: Path, build: bool = False) -> str:
            raise ImageError(f"chunk {chunk.name}: image {chunk.container.image} is not on this machine")

    plan = two_engine_plan()
    made: dict[str, Any] = {}
    kind = NoImages if missing else FakeEngine
    default = kind("default")

    def factory(name: str, spec: Any, base_dir: Path) -> Any:
        made[name] = kind(name, spec.reach_address(), port_ip=spec.port_ip())
        return made[name]

    run = make_run(tmp_path, plan, EngineSet.for_plan(plan, default=default, factory=factory))
    run.force_recreate = force
    return run, default


def test_prepare_names_every_missing_image_at_once_and_starts_nothing(tmp_path: Path) -> None:
    from pnr.exceptions import ImageError

    run, default = _fake_run(tmp_path, missing=True)
    with pytest.raises(ImageError) as info:
        run.prepare()
    assert [line.split(":")[0] for line in str(info.value).splitlines()] == ["chunk db", "chunk web"]
    assert not default.networks and not default.containers


def test_prepare_refuses_a_domain_another_config_file_made_unless_taken_over(tmp_path: Path) -> None:
    from pnr.engines import ContainerState

    run, default = _fake_run(tmp_path)
    theirs = {**_labels("d", "/elsewhere/d.json"), "io.pnr.chunk": "web"}
    default.containers["c-web"] = ContainerState("id-web", "c-web", "running", True, None, theirs)
    with pytest.raises(ConfigError, match=r"brought up from another config file: /elsewhere/d.json \(1 container\)"):
        run.prepare()
    assert not default.networks
    taking_over, default = _fake_run(tmp_path, force=True)
    default.containers["c-web"] = ContainerState("id-web", "c-web", "running", True, None, theirs)
    taking_over.prepare()
    assert default.networks == ["pnr_d"]
