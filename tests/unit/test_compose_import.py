"""`pnr import`: docker-compose files as pnr domain configs (pnr.compose). No Docker needed."""

from __future__ import annotations

import copy
import functools
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import pnr
from pnr.compose import SERVICE_KEYS, ImportResult, Note, compose_schema, import_compose, service_keys
from pnr.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config" / "compose"
DOCS = ROOT / "docs" / "compose.md"


def validate(domain: dict[str, Any]) -> pnr.Plan:
    """What `pnr validate` checks: the model (pnr.parse_domain) and the signal graph (pnr.make_plan)."""
    return pnr.make_plan(pnr.parse_domain(copy.deepcopy(domain)))


def compose(tmp_path: Path, text: str, filename: str = "docker-compose.yml", **kwargs: Any) -> ImportResult:
    path = tmp_path / filename
    path.write_text(textwrap.dedent(text))
    kwargs.setdefault("environ", {})
    return import_compose(path, **kwargs)


def chunks(result: ImportResult) -> dict[str, dict[str, Any]]:
    (cpux,) = result.domain["cpuxs"].values()
    return {c["name"]: c for c in cpux["design_chunks"]}


def notes(result: ImportResult, path: str) -> list[str]:
    return [n.message for n in result.notes if n.path == path]


def issues(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {i.path: i.message for i in exc.value.issues}


YES = {"response": ["yes"], "tv": "Y"}


# -- the committed examples ------------------------------------------------------------------------------
@pytest.mark.parametrize("example", ["chain", "demo", "full", "ports"])
def test_example_imports_and_validates(example: str) -> None:
    result = import_compose(EXAMPLES / f"{example}.yml", name=example, environ={})
    plan = validate(result.domain)
    assert result.project == example
    assert list(result.domain["cpuxs"]) == [example]
    assert not plan.external  # every gate signal is produced in the domain
    json.loads(result.to_json())  # the formatted output is JSON


def test_import_uses_the_container_fields_pnr_has() -> None:
    """entrypoint, working_dir, user, dockerfile, build_args, init, stop_signal, stop_grace_period_seconds."""
    result = import_compose(EXAMPLES / "full.yml", name="full", environ={})
    used = {key for chunk in chunks(result).values() for key in chunk["container"]}
    assert used <= set(pnr.ContainerSpec.model_fields)
    assert {
        "entrypoint",
        "working_dir",
        "user",
        "build_args",
        "init",
        "stop_signal",
        "stop_grace_period_seconds",
    } <= used


def test_chain_example_is_a_chain_of_healthy_gates() -> None:
    result = import_compose(EXAMPLES / "chain.yml", name="chain", environ={})
    plan = validate(result.domain)
    assert plan.levels["chain"] == [[f"s{i}"] for i in range(6)]
    s1 = chunks(result)["s1"]
    assert list(s1["gatekeeper"]) == ["s0_healthy"]
    assert s1["health_check"]["type"] == "exec"
    assert s1["health_check"]["command"] == ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    assert s1["container"]["name"] == "chain-s1-1"
    assert result.notes == []


def test_full_example_order_matches_compose() -> None:
    result = import_compose(EXAMPLES / "full.yml", name="full", environ={})
    plan = validate(result.domain)
    assert plan.depends_on == {
        "db": [],
        "migrate": ["db"],
        "app": ["db", "migrate"],
        "worker": ["app"],
        "smoke": ["app"],
    }
    c = chunks(result)
    assert c["migrate"]["kind"] == "job"
    assert list(c["app"]["gatekeeper"]) == ["migrate_completed", "db_healthy"]
    # worker waits with service_started on app, which smoke needs healthy: app's on_start signal
    assert list(c["worker"]["gatekeeper"]) == ["app_started"]
    assert c["app"]["on_start"] == {"app_started": {"prompt": "has app started?", "response": ["yes"], "tv": "Y"}}
    assert not notes(result, "services.worker.depends_on[0]")


# -- ordering: depends_on → gatekeeper / flowout ------------------------------------------------------------
def test_started_healthy_completed_and_system_ready(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          db:
            image: postgres:16
            healthcheck: {test: ["CMD", "pg_isready"], interval: 2s, timeout: 1s, retries: 5, start_period: 10s}
          migrate:
            image: app:1
            depends_on: {db: {condition: service_healthy}}
          cache:
            image: redis:7
          app:
            image: app:1
            depends_on:
              migrate: {condition: service_completed_successfully}
              cache: {condition: service_started}
    """,
        filename="compose.yaml",
    )
    c = chunks(result)
    assert c["db"]["gatekeeper"] == {"system_ready": {"prompt": "is system ready?", **YES}}
    assert c["db"]["flowout"] == {"db_healthy": {"prompt": "is db healthy?", **YES}}
    assert c["db"]["health_check"] == {
        "type": "exec",
        "command": ["pg_isready"],
        "interval_seconds": 2.0,
        "timeout_seconds": 1.0,
        "deadline_seconds": 60.0,
        "start_period_seconds": 10.0,
        "failure_threshold": 5,
        "status_mapping": {
            "success": {"key": "db_healthy", **YES},
            "failure": {"key": "db_healthy", "response": ["no"], "tv": "N"},
        },
    }
    assert c["migrate"]["kind"] == "job" and "health_check" not in c["migrate"]
    assert c["migrate"]["flowout"] == {"migrate_completed": {"prompt": "has migrate completed successfully?", **YES}}
    assert list(c["migrate"]["gatekeeper"]) == ["db_healthy"]
    assert c["cache"]["flowout"] == {"cache_started": {"prompt": "has cache started?", **YES}}
    assert "health_check" not in c["cache"] and "kind" not in c["cache"]
    assert list(c["app"]["gatekeeper"]) == ["migrate_completed", "cache_started"]
    assert list(c) == ["db", "cache", "migrate", "app"]  # dependency order
    plan = validate(result.domain)
    assert plan.levels[result.project] == [["db", "cache"], ["migrate"], ["app"]]
    assert result.notes == []


def test_short_form_is_service_started(tmp_path: Path) -> None:
    c = chunks(
        compose(
            tmp_path,
            """
        services:
          a: {image: x}
          b: {image: x, depends_on: [a]}
    """,
        )
    )
    assert list(c["b"]["gatekeeper"]) == ["a_started"]


def test_deadline_covers_start_period_and_retries(tmp_path: Path) -> None:
    c = chunks(
        compose(
            tmp_path,
            """
        services:
          a: {image: x, healthcheck: {test: "true", interval: 10s, timeout: 5s, retries: 10, start_period: 30s}}
          b: {image: x, depends_on: {a: {condition: service_healthy}}}
    """,
        )
    )
    check = c["a"]["health_check"]
    assert check["deadline_seconds"] == 2 * (30 + 10 * (10 + 5))
    assert check["deadline_seconds"] > check["start_period_seconds"] + check["failure_threshold"] * 10


def test_healthcheck_defaults_and_shell_forms(tmp_path: Path) -> None:
    c = chunks(
        compose(
            tmp_path,
            """
        services:
          a: {image: x, healthcheck: {test: "curl -f http://localhost/ || exit 1"}}
          b: {image: x, healthcheck: {test: ["CMD-SHELL", "pg_isready -U app"]}}
          c:
            image: x
            depends_on:
              a: {condition: service_healthy}
              b: {condition: service_healthy}
    """,
        )
    )
    assert c["a"]["health_check"]["command"] == ["sh", "-c", "curl -f http://localhost/ || exit 1"]
    assert c["b"]["health_check"]["command"] == ["sh", "-c", "pg_isready -U app"]
    check = c["a"]["health_check"]
    assert (check["interval_seconds"], check["timeout_seconds"], check["failure_threshold"]) == (30.0, 30.0, 3)
    assert check["deadline_seconds"] == 2 * 3 * 60.0


def test_service_healthy_without_healthcheck_waits_for_the_image_healthcheck(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          a: {image: x}
          b: {image: x, depends_on: {a: {condition: service_healthy}}}
          c: {image: x, healthcheck: {interval: 1s}}
          d: {image: x, depends_on: {c: {condition: service_healthy}}}
    """,
    )
    c = chunks(result)
    assert c["a"]["health_check"]["type"] == "docker"
    assert "failure_threshold" not in c["a"]["health_check"]  # "starting" must not count as a failure
    assert c["c"]["health_check"]["type"] == "docker"
    assert notes(result, "services.c.healthcheck")
    validate(result.domain)


def test_healthcheck_nobody_waits_for_is_probed(tmp_path: Path) -> None:
    c = chunks(compose(tmp_path, "services:\n  a: {image: x, healthcheck: {test: [CMD, 'true']}}\n"))
    assert c["a"]["flowout"] == {"a_healthy": {"prompt": "is a healthy?", **YES}}
    assert c["a"]["health_check"]["command"] == ["true"]


@pytest.mark.parametrize("off", ["{disable: true}", "{test: [NONE]}", "{disable: 'true', test: [CMD, x]}"])
def test_disabled_healthcheck(tmp_path: Path, off: str) -> None:
    result = compose(
        tmp_path, f"services:\n  a: {{image: x, healthcheck: {off}}}\n  b: {{image: x, depends_on: [a]}}\n"
    )
    assert "health_check" not in chunks(result)["a"]
    with pytest.raises(ConfigError) as exc:
        compose(
            tmp_path,
            f"services:\n  a: {{image: x, healthcheck: {off}}}\n"
            "  b: {image: x, depends_on: {a: {condition: service_healthy}}}\n",
        )
    assert "healthcheck is off" in issues(exc)["services.b.depends_on.a"]


def test_started_only_dependents_keep_exact_order_and_skip_the_probe(tmp_path: Path) -> None:
    text = """
        services:
          db: {image: x, healthcheck: {test: [CMD, ready]}}
          api: {image: x, depends_on: [db]}
    """
    result = compose(tmp_path, text, started_signals=False)
    c = chunks(result)
    assert "health_check" not in c["db"]
    assert list(c["api"]["gatekeeper"]) == ["db_started"]
    assert "not probed" in notes(result, "services.db.healthcheck")[0]
    # the default: the healthcheck is probed too (`pnr up` ends when all is healthy, like `up --wait`), and
    # api still starts as soon as db runs, through db's on_start signal
    probed = chunks(compose(tmp_path, text))
    assert probed["db"]["health_check"]["type"] == "exec" and "db_started" in probed["db"]["on_start"]
    assert list(probed["api"]["gatekeeper"]) == ["db_started"]


def test_started_and_healthy_on_one_service_is_noted_not_faked(tmp_path: Path) -> None:
    text = """
        services:
          db: {image: x, healthcheck: {test: [CMD, ready]}}
          web: {image: x, depends_on: {db: {condition: service_started}}}
          api: {image: x, depends_on: {db: {condition: service_healthy}}}
          job: {image: x, depends_on: {api: {condition: service_completed_successfully}}}
          late: {image: x, depends_on: {api: {condition: service_started}}}
    """
    result = compose(tmp_path, text, started_signals=False)
    c = chunks(result)
    assert list(c["web"]["gatekeeper"]) == ["db_healthy"]  # stricter than compose, never earlier
    assert list(c["late"]["gatekeeper"]) == ["api_completed"]
    assert "later than compose" in notes(result, "services.web.depends_on.db")[0]
    assert "later than compose" in notes(result, "services.late.depends_on.api")[0]
    assert not any("on_start" in chunk for chunk in c.values())
    validate(result.domain)

    # with pnr's on_start signals (the default): exact
    exact_result = compose(tmp_path, text)
    validate(exact_result.domain)
    exact = chunks(exact_result)
    assert exact["db"]["on_start"] == {"db_started": {"prompt": "has db started?", **YES}}
    assert exact["db"]["flowout"] == {"db_healthy": {"prompt": "is db healthy?", **YES}}
    assert list(exact["web"]["gatekeeper"]) == ["db_started"]
    assert list(exact["api"]["gatekeeper"]) == ["db_healthy"]
    assert exact["api"]["kind"] == "job" and "api_started" in exact["api"]["on_start"]
    assert list(exact["late"]["gatekeeper"]) == ["api_started"]


def test_healthy_on_a_job_waits_for_completion(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          seed: {image: x, healthcheck: {test: [CMD, ok]}}
          a: {image: x, depends_on: {seed: {condition: service_completed_successfully}}}
          b: {image: x, depends_on: {seed: {condition: service_healthy}}}
    """,
    )
    c = chunks(result)
    assert c["seed"]["kind"] == "job" and "health_check" not in c["seed"]
    assert list(c["b"]["gatekeeper"]) == ["seed_completed"]
    assert notes(result, "services.b.depends_on.seed") and notes(result, "services.seed.healthcheck")


def test_implicit_dependencies(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          db: {image: x}
          data: {image: x}
          net: {image: x}
          api:
            image: x
            links: ["db:database"]
            volumes_from: [data, "container:other"]
            network_mode: "service:net"
    """,
    )
    api = chunks(result)["api"]
    assert set(api["gatekeeper"]) == {"db_started", "data_started", "net_started"}
    assert "alias 'database'" in " ".join(notes(result, "services.api.links[0]"))
    assert any("implied by links" in m for m in notes(result, "services.api.links[0]"))
    assert notes(result, "services.api.volumes_from") and notes(result, "services.api.network_mode")


def test_required_false_and_profiles(tmp_path: Path) -> None:
    text = """
        services:
          api:
            image: x
            depends_on:
              debug: {condition: service_started, required: false}
              cache: {condition: service_started, required: false}
          cache: {image: x}
          debug: {image: x, profiles: [debug]}
          tools: {image: x, profiles: [tools, ops]}
    """
    result = compose(tmp_path, text)
    c = chunks(result)
    assert set(c) == {"api", "cache"}
    assert list(c["api"]["gatekeeper"]) == ["cache_started"]
    assert "does not wait" in notes(result, "services.api.depends_on.debug")[0]
    assert "like for a required dependency" in notes(result, "services.api.depends_on.cache.required")[0]
    assert "--profile tools" in notes(result, "services.tools.profiles")[0]

    c = chunks(compose(tmp_path, text, profiles=["debug"]))
    assert set(c) == {"api", "cache", "debug"} and "debug_started" in c["api"]["gatekeeper"]
    assert set(chunks(compose(tmp_path, text, profiles=["*"]))) == {"api", "cache", "debug", "tools"}
    assert "tools" in chunks(compose(tmp_path, text, profiles=["ops"]))


def test_required_dependency_in_a_disabled_profile_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(
            tmp_path,
            """
            services:
              api: {image: x, depends_on: [debug]}
              debug: {image: x, profiles: [debug]}
        """,
        )
    assert "profiles not enabled (debug)" in issues(exc)["services.api.depends_on[0]"]


def test_depends_on_restart_is_noted(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          a: {image: x}
          b: {image: x, depends_on: {a: {condition: service_started, restart: true}}}
    """,
    )
    assert "on_dependency_lost" in notes(result, "services.b.depends_on.a.restart")[0]


# -- names ------------------------------------------------------------------------------------------------
def test_project_name_precedence(tmp_path: Path) -> None:
    folder = tmp_path / "My Shop!"
    folder.mkdir()
    assert compose(folder, "services:\n  a: {image: x}\n").project == "myshop"
    assert compose(folder, "name: Shop_2\nservices:\n  a: {image: x}\n").project == "shop_2"
    result = compose(folder, "name: shop\nservices:\n  a: {image: x}\n", name="other")
    assert result.project == "other"
    assert list(result.domain["cpuxs"]) == ["other"]
    assert chunks(result)["a"]["container"]["name"] == "other-a-1"
    with pytest.raises(ConfigError) as exc:
        compose(folder, "services:\n  a: {image: x}\n", name="Bad Name")
    assert "not a valid project name" in exc.value.issues[0].message


def test_container_name(tmp_path: Path) -> None:
    c = chunks(compose(tmp_path, "services:\n  a: {image: x, container_name: my-a}\n  b: {image: x}\n"))
    assert c["a"]["container"]["name"] == "my-a"
    assert c["b"]["container"]["name"] == f"{tmp_path.name.lower()}-b-1"


# -- containers --------------------------------------------------------------------------------------------
def test_image_command_entrypoint_and_process_keys(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          a:
            image: busybox:1
            entrypoint: /bin/sh -c
            command: ["echo hi"]
            working_dir: /srv
            user: "1000:1000"
            init: true
            stop_signal: SIGINT
            stop_grace_period: 1m30s
          b: {image: x, entrypoint: [], command: [], init: "false", stop_grace_period: 500ms, stop_signal: term}
          c: {image: x, stop_grace_period: 2h}
    """,
    )
    a, b = chunks(result)["a"]["container"], chunks(result)["b"]["container"]
    assert a == {
        "name": a["name"],
        "image": "busybox:1",
        "command": ["echo hi"],
        "entrypoint": "/bin/sh -c",
        "working_dir": "/srv",
        "user": "1000:1000",
        "init": True,
        "stop_signal": "SIGINT",
        "stop_grace_period_seconds": 90.0,
    }
    # compose resets the image's command/entrypoint with []; pnr's model refuses empty ones: reported
    assert "entrypoint" not in b and "command" not in b and b["init"] is False
    assert "ENTRYPOINT" in notes(result, "services.b.entrypoint")[0] and notes(result, "services.b.command")
    assert b["stop_grace_period_seconds"] == 0.5 and b["stop_signal"] == "SIGTERM"
    assert chunks(result)["c"]["container"]["stop_grace_period_seconds"] == 3600
    assert notes(result, "services.c.stop_grace_period")
    validate(result.domain)


def test_build(tmp_path: Path) -> None:
    (tmp_path / "proj" / "app").mkdir(parents=True)
    result = compose(
        tmp_path / "proj",
        """
        services:
          a:
            build:
              context: ./app
              dockerfile: Dockerfile.dev
              args: {VERSION: "1.2", TOKEN: "${NPM_TOKEN}", BARE: null, HOSTVAR: null, N: 3}
              target: prod
          b: {image: b:1, build: ./app}
          c: {image: c:1, build: "https://github.com/x/y.git"}
    """,
        output_dir=tmp_path / "out",
        environ={"NPM_TOKEN": "t0k", "HOSTVAR": "h"},
    )
    c = chunks(result)
    assert c["a"]["container"]["build_path"] == "../proj/app"
    assert c["a"]["container"]["dockerfile"] == "Dockerfile.dev"
    assert c["a"]["container"]["build_target"] == "prod"
    # resolved when importing, as compose resolves build args (pnr passes them to the build as they are)
    assert c["a"]["container"]["build_args"] == {"VERSION": "1.2", "TOKEN": "t0k", "HOSTVAR": "h", "N": "3"}
    assert notes(result, "services.a.build.args.TOKEN") and notes(result, "services.a.build.args.HOSTVAR")
    assert "left out" in notes(result, "services.a.build.args.BARE")[0]
    assert "image" not in c["a"]["container"]
    assert "pnr-<domain>-<chunk>" in notes(result, "services.a.build")[0]
    assert c["b"]["container"] == {"name": c["b"]["container"]["name"], "image": "b:1", "build_path": "../proj/app"}
    assert "build_path" not in c["c"]["container"] and "remote build context" in notes(result, "services.c.build")[0]
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a: {build: 'git@github.com:x/y.git'}\n")
    assert list(issues(exc)) == ["services.a.build"]  # one error: not a second "has neither image nor build"
    assert "clone it and give its folder as the context" in issues(exc)["services.a.build"]


def test_environment_forms_and_variables(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          a:
            image: x
            environment:
              PLAIN: value
              NUMBER: 3
              FLAG: true
              SECRET: ${DB_PASSWORD}
              WITH_DEFAULT: ${LEVEL:-info}
              UNBRACED: $HOME/x
              DASH: ${A-b}
              REQUIRED: ${TOKEN:?set TOKEN}
              ALT: ${SET:+yes}
              ESCAPED: $$HOME
              INHERITED:
          b:
            image: x
            environment: ["K=v", "EMPTY=", "BARE", "URL=http://${HOST}:${PORT:-80}/"]
    """,
        environ={"SET": "1", "DB_PASSWORD": "s3cr3t"},
    )
    a, b = chunks(result)["a"]["container"]["env"], chunks(result)["b"]["container"]["env"]
    assert a == {
        "PLAIN": "value",
        "NUMBER": "3",
        "FLAG": "true",
        "SECRET": "${DB_PASSWORD}",
        "WITH_DEFAULT": "${LEVEL:-info}",
        "UNBRACED": "${HOME}/x",
        "DASH": "${A:-b}",
        "REQUIRED": "${TOKEN}",
        "ALT": "yes",
        "ESCAPED": "$HOME",
        "INHERITED": "${INHERITED:-}",
    }
    assert b == {"K": "v", "EMPTY": "", "BARE": "${BARE:-}", "URL": "http://${HOST}:${PORT:-80}/"}
    assert "s3cr3t" not in result.to_json()  # secrets stay out of the generated file
    for key in ("DASH", "REQUIRED", "ALT", "INHERITED"):
        assert notes(result, f"services.a.environment.{key}"), key
    for key in ("PLAIN", "SECRET", "WITH_DEFAULT", "ESCAPED"):
        assert not notes(result, f"services.a.environment.{key}"), key
    assert (
        "HOME unset in the shell and in .env: pnr up refuses to start"
        in notes(result, "services.a.environment.UNBRACED")[0]
    )
    assert notes(result, "services.b.environment.BARE")


def test_env_file(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text(
        textwrap.dedent("""\
        # comment
        export A=1
        B="two words"\x20\x20
        C='${LITERAL}'
        D=${FROM_HOST:-d} # trailing comment
        E
        OVERRIDDEN=file
        M="line1\\nline2"
    """)
    )
    result = compose(
        tmp_path,
        """
        services:
          a:
            image: x
            env_file: [app.env, {path: missing.env, required: false}]
            environment: {OVERRIDDEN: environment}
    """,
    )
    env = chunks(result)["a"]["container"]["env"]
    assert env == {
        "A": "1",
        "B": "two words",
        "C": "${LITERAL}",
        "D": "${FROM_HOST:-d}",
        "E": "${E:-}",
        "OVERRIDDEN": "environment",
        "M": "line1\nline2",
    }
    assert "copied into container.env" in " ".join(notes(result, "services.a.env_file[0]"))
    assert "not required" in notes(result, "services.a.env_file[1]")[0]
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a: {image: x, env_file: nowhere.env}\n")
    assert "not found" in issues(exc)["services.a.env_file"]


def test_ports(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          a:
            image: x
            ports:
              - "8080:80"
              - "127.0.0.1:9000-9001:9000-9001"
              - "0.0.0.0:443:443"
              - "53:53/udp"
              - "[::1]:7000:7000"
              - "3000"
              - 4000
              - "22:22"
              - "5000-5010:5000"
              - "8081:80"
              - "9999:9999/sctp"
              - {target: 6379, published: "16379", host_ip: 127.0.0.1, protocol: tcp}
              - {target: 8443, published: 18443, name: tls, app_protocol: https, mode: host}
    """,
    )
    ports = chunks(result)["a"]["container"]["ports"]
    assert ports == {
        "80": "8080",
        "9000": "127.0.0.1:9000",
        "9001": "127.0.0.1:9001",
        "443": "0.0.0.0:443",
        "53/udp": "53",
        "7000": "[::1]:7000",
        "22": "22",
        "5000": "5000",
        "6379": "127.0.0.1:16379",
        "8443": "18443",
    }
    for i in (0, 3, 7, 8, 12):
        assert any("127.0.0.1 (pnr's default)" in m for m in notes(result, f"services.a.ports[{i}]")), i
    for i in (1, 2, 4, 11):
        assert not any("pnr's default" in m for m in notes(result, f"services.a.ports[{i}]")), i
    assert "random host port" in notes(result, "services.a.ports[5]")[0]
    assert "random host port" in notes(result, "services.a.ports[6]")[0]
    assert any("compose picks a free port" in m for m in notes(result, "services.a.ports[8]"))
    assert "already published" in notes(result, "services.a.ports[9]")[0]
    assert "sctp" in notes(result, "services.a.ports[10]")[0]
    for key in ("name", "app_protocol", "mode"):
        assert notes(result, f"services.a.ports[12].{key}")
    validate(result.domain)


@pytest.mark.parametrize("bad", ['"70000:80"', '"1:2:3:4:5:6:7:x"', '"9000-9002:9000-9001"', '"x:80"'])
def test_bad_ports(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, f"services:\n  a:\n    image: x\n    ports: [{bad}]\n")
    assert "services.a.ports[0]" in issues(exc)


def test_volumes(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    result = compose(
        project,
        """
        services:
          a:
            image: x
            volumes:
              - ./html:/usr/share/nginx/html:ro
              - ../shared:/shared
              - /abs:/abs:rw
              - ~/cache:/cache
              - data:/data
              - named:/named
              - ext:/ext
              - /anonymous
              - ./z:/z:ro,z
              - {type: bind, source: ./conf, target: /etc/app, read_only: true, bind: {propagation: rshared}}
              - {type: volume, source: data, target: /data2, volume: {nocopy: true}}
              - {type: tmpfs, target: /tmp}
        volumes:
          data: {}
          named: {name: my-named-volume, driver: local}
          ext: {external: true}
    """,
        output_dir=tmp_path / "out",
    )
    volumes = chunks(result)["a"]["container"]["volumes"]
    assert volumes == [
        "../proj/html:/usr/share/nginx/html:ro",
        "../shared:/shared",
        "/abs:/abs",
        "~/cache:/cache",
        "proj_data:/data",
        "my-named-volume:/named",
        "ext:/ext",
        "proj_a_7:/anonymous",
        "../proj/z:/z:ro",
        "../proj/conf:/etc/app:ro",
        "proj_data:/data2",
    ]
    assert "anonymous volume" in notes(result, "services.a.volumes[7]")[0]
    assert "'z'" in notes(result, "services.a.volumes[8]")[0]
    assert notes(result, "services.a.volumes[9].bind") and notes(result, "services.a.volumes[10].volume")
    assert "tmpfs mount" in notes(result, "services.a.volumes[11]")[0]
    assert notes(result, "volumes.named.driver") and notes(result, "volumes.ext.external")
    # without output_dir, paths stay relative to the compose file, which is where the domain file goes
    same = chunks(compose(project, "services:\n  a: {image: x, volumes: ['./html:/h', './h2/x:/x']}\n"))
    assert same["a"]["container"]["volumes"][0] == "./html:/h"
    # an output folder with nothing in common with the compose file's but "/": still relative to the domain file
    far = chunks(compose(project, "services:\n  a: {image: x, volumes: ['./html:/h']}\n", output_dir="/"))
    assert far["a"]["container"]["volumes"] == [f"./{project.relative_to('/')}/html:/h"]
    validate(result.domain)


def test_undeclared_volume_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a: {image: x, volumes: ['data:/data']}\n")
    assert "not declared" in issues(exc)["services.a.volumes[0]"]


def test_secrets_and_configs(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          a:
            image: x
            secrets: [token, {source: cert, target: tls.pem, mode: 0400}, fromenv]
            configs: [app, {source: app, target: /etc/app.conf}]
        secrets:
          token: {file: ./secrets/token.txt}
          cert: {file: /etc/ssl/cert.pem}
          fromenv: {environment: TOKEN}
        configs:
          app: {file: ./app.conf}
    """,
    )
    assert chunks(result)["a"]["container"]["volumes"] == [
        "./secrets/token.txt:/run/secrets/token:ro",
        "/etc/ssl/cert.pem:/run/secrets/tls.pem:ro",
        "./app.conf:/app:ro",
        "./app.conf:/etc/app.conf:ro",
    ]
    assert "not mounted" in notes(result, "services.a.secrets[2]")[0]
    assert notes(result, "services.a.secrets[1].mode")
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a: {image: x, secrets: [nope]}\n")
    assert "not declared" in issues(exc)["services.a.secrets[0]"]


def test_labels(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("from.file=1\nshared=file\n")
    result = compose(
        tmp_path,
        """
        services:
          a: {image: x, labels: {com.example.team: web, count: 3, on: true, io.pnr.domain: x}}
          b: {image: x, labels: ["a=b", "bare"], label_file: labels.txt}
          c: {image: x, labels: {shared: yaml}, label_file: [labels.txt]}
    """,
    )
    c = chunks(result)
    assert c["a"]["container"]["labels"] == {"com.example.team": "web", "count": "3", "on": "true"}
    assert notes(result, 'services.a.labels["io.pnr.domain"]')
    assert c["b"]["container"]["labels"] == {"from.file": "1", "shared": "file", "a": "b", "bare": ""}
    assert c["c"]["container"]["labels"]["shared"] == "yaml"


def test_interpolation_outside_env_is_resolved_with_a_note(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=from-dotenv\nPORT=8080\n")
    result = compose(
        tmp_path,
        """
        services:
          a:
            image: "app:${TAG}"
            ports: ["${PORT}:80", "${MISSING:-9000}:90"]
            command: ["echo", "$${literal}", "${UNSET}"]
            environment: {TAG: "${TAG}"}
    """,
        environ={"PORT": "8081"},
    )
    a = chunks(result)["a"]["container"]
    assert a["image"] == "app:from-dotenv"
    assert a["ports"] == {"80": "8081", "90": "9000"}  # the environment wins over .env, as in compose
    assert a["command"] == ["echo", "${literal}", ""]
    assert a["env"] == {"TAG": "${TAG}"}  # kept for pnr
    assert "resolved when importing" in notes(result, "services.a.image")[0]
    assert "resolved when importing" in notes(result, "services.a.ports[0]")[0]
    assert "UNSET unset" in notes(result, "services.a.command[2]")[0]
    assert not notes(result, "services.a.command[1]")


def test_extends_same_file(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          base:
            image: app:1
            environment: {A: "1", B: "1"}
            ports: ["8000"]
            command: ["serve"]
            depends_on: [db]
          web:
            extends: base
            environment: [B=2, C=3]
            ports: ["9000:9000"]
            command: ["serve", "--web"]
          db: {image: db}
    """,
    )
    web = chunks(result)["web"]
    assert web["container"]["env"] == {"A": "1", "B": "2", "C": "3"}
    assert web["container"]["ports"] == {"9000": "9000"}  # 8000: a random host port, not published by pnr
    assert web["container"]["command"] == ["serve", "--web"]
    assert list(web["gatekeeper"]) == ["system_ready"]  # depends_on is not inherited
    assert any("merged with service 'base'" in m for m in notes(result, "services.web.extends"))
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a: {image: x, extends: {service: b, file: other.yml}}\n")
    assert "another file" in issues(exc)["services.a.extends.file"]
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a: {image: x, extends: b}\n  b: {image: x, extends: a}\n")
    assert "extends cycle" in " ".join(issues(exc).values())


def test_yaml_1_2_scalars_as_compose_v2_reads_them(tmp_path: Path) -> None:
    result = compose(tmp_path, "services:\n  a:\n    image: x\n    restart: no\n    ports: [22:22]\n")
    assert chunks(result)["a"]["container"]["ports"] == {"22": "22"}
    assert not notes(result, "services.a.restart")  # "no" is pnr's behaviour


# -- every note path ---------------------------------------------------------------------------------------
def _sample(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """A small value valid under `schema` (first branch of oneOf/anyOf, first non-null type)."""
    if "$ref" in schema:
        return _sample(root["$defs"][schema["$ref"].split("/")[-1]], root)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return _sample(schema[key][0], root)
    kind = schema.get("type", "object")
    kind = next(k for k in kind if k != "null") if isinstance(kind, list) else kind
    if "enum" in schema:
        return schema["enum"][0]
    if "pattern" in schema:  # pull_policy: "always|never|..."
        return schema["pattern"].split("|")[0]
    if kind == "object":
        return {k: _sample(schema["properties"][k], root) for k in schema.get("required", [])}
    return {"string": "x", "boolean": True, "integer": 2, "number": 2, "array": []}[kind]


@functools.cache
def schema_validator() -> Any:
    schema = compose_schema()
    return jsonschema.validators.validator_for(schema)(schema)


UNSUPPORTED = sorted(k for k, rule in SERVICE_KEYS.items() if rule.handling == "unsupported" and k != "provider")


@pytest.mark.parametrize("key", UNSUPPORTED)
def test_every_unsupported_key_is_noted_with_its_path(tmp_path: Path, key: str) -> None:
    schema = compose_schema()
    value = _sample(schema["$defs"]["service"]["properties"][key], schema)
    service = {"image": "x", key: value}
    schema_validator().validate({"services": {"app": service}})
    path = tmp_path / "compose.yml"
    path.write_text(json.dumps({"services": {"app": service}}))  # JSON is YAML
    result = import_compose(path, environ={})
    assert notes(result, f"services.app.{key}") == [SERVICE_KEYS[key].pnr]


def test_deploy_is_noted_per_key(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          web:
            image: x
            deploy:
              replicas: 2
              resources: {limits: {memory: 64M}}
              restart_policy: {condition: on-failure}
              placement: {constraints: []}
            restart: always
            x-custom: ignored
        x-anchors: {a: 1}
    """,
    )
    for key in ("replicas", "resources", "restart_policy", "placement"):
        assert notes(result, f"services.web.deploy.{key}"), key
    assert notes(result, "services.web.restart")
    assert not [n for n in result.notes if "x-" in n.path]


def test_provider_service_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  ai: {provider: {type: model}}\n")
    assert "provider" in issues(exc)["services.ai.provider"]


def test_top_level_notes(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        version: "3.9"
        services:
          a: {image: x, networks: [front]}
        networks: {front: {driver: bridge}}
    """,
    )
    assert notes(result, "version") and notes(result, "networks.front") and notes(result, "services.a.networks")


def test_notes_render_and_come_in_file_order(tmp_path: Path) -> None:
    result = compose(
        tmp_path,
        """
        services:
          b: {image: x, restart: always}
          a: {image: x, privileged: true, depends_on: [b]}
    """,
    )
    assert [n.path for n in result.notes] == ["services.b.restart", "services.a.privileged"]
    note = result.notes[0]
    assert isinstance(note, Note)
    assert note.render("dc.yml") == f"dc.yml: services.b.restart: {note.message}"


# -- bad input -----------------------------------------------------------------------------------------------
def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a:\n    image: [x\n  b: {}\n")
    (issue,) = exc.value.issues
    assert re.search(r"invalid YAML at line \d+ column \d+", issue.message)
    assert exc.value.source.endswith("docker-compose.yml")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  a:\n    image: x\n    image: y\n")
    assert issues(exc)["services.a.image"] == "key 'image' appears twice in the same mapping (lines 3 and 4)"


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("services:\n  a:\n    image: x\n    imagee: y\n", "services.a.imagee", "did you mean 'image'?"),
        ("services:\n  a:\n    image: x\n    ports: {a: 1}\n", "services.a.ports", "not a valid array"),
        ("services:\n  a:\n    image: [x]\n", "services.a.image", "not a valid string"),
        (
            "services:\n  a:\n    image: x\n    depends_on: {b: {condition: ready}}\n  b: {image: x}\n",
            "services.a.depends_on.b.condition",
            "not one of",
        ),
        ("servics:\n  a: {image: x}\n", "servics", "did you mean 'services'?"),
    ],
)
def test_schema_violations_name_the_path(tmp_path: Path, text: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, text)
    found = issues(exc)
    assert path in found, found
    assert message in found[path]
    assert re.search(r"\(line \d+\)$", found[path])


def test_unknown_depends_on_service(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, "services:\n  api: {image: x, depends_on: [dbb]}\n  db: {image: x}\n")
    assert issues(exc)["services.api.depends_on[0]"].startswith(
        "'api' depends on undefined service 'dbb'; did you mean 'db'? (line 2)"
    )


@pytest.mark.parametrize(
    ("text", "cycle"),
    [
        ("services:\n  a: {image: x, depends_on: [a]}\n", "a → a"),
        ("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n", "a → b → a"),
        (
            "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, links: [c]}\n"
            "  c: {image: x, depends_on: {a: {condition: service_healthy}}}\n",
            "a → b → c → a",
        ),
    ],
)
def test_dependency_cycle(tmp_path: Path, text: str, cycle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, text)
    assert any(f"dependency cycle: {cycle}" in m for m in issues(exc).values())


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("", "", "not empty"),
        ("- a\n", "", "not a list"),
        ("services: {}\n", "services", "no services"),
        (
            "services:\n  a: {image: x, environment: {X: '${X:?please set X}'}}\n  b: {image: '${B:?need B}'}\n",
            "services.b.image",
            "need B",
        ),
        ("services:\n  a: {image: x, healthcheck: {test: [CMD]}}\n", "services.a.healthcheck.test", "CMD"),
        ("services:\n  a: {image: x, healthcheck: {test: [RUN, x]}}\n", "services.a.healthcheck.test", "CMD"),
        (
            "services:\n  a: {image: x, healthcheck: {test: [CMD, x], interval: soon}}\n",
            "services.a.healthcheck.interval",
            "not a duration",
        ),
        ("services:\n  a: {image: x, init: maybe}\n", "services.a.init", "not a boolean"),
        ("services:\n  a: {command: [x]}\n", "services.a", "neither image nor build"),
        ("services:\n  _a: {image: x}\n", "services._a", "cannot be a pnr chunk name"),
        ("services:\n  a: {image: x, container_name: a}\n", "services.a.container_name", "does not match"),
        ("services:\n  a: {image: x, container_name: a.b-c_d!}\n", "services.a.container_name", "the engine's rule"),
        ("services:\n  a: {image: '${'}\n", "services.a.image", "invalid interpolation"),
    ],
)
def test_other_errors(tmp_path: Path, text: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        compose(tmp_path, text)
    found = issues(exc)
    assert path in found, found
    assert message in found[path]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        import_compose(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="no compose file here"):
        import_compose(tmp_path)


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    with pytest.raises(ConfigError, match="refused"):
        compose(tmp_path, "\n".join(lines) + "\nservices:\n  a: {image: x}\n")


# -- the schema and the key table ----------------------------------------------------------------------------
def test_key_table_covers_the_schema_exactly() -> None:
    assert sorted(SERVICE_KEYS) == service_keys()
    assert len(service_keys()) > 90  # the newest compose-spec schema (pre_start, use_api_socket, ...)
    assert {"pre_start", "use_api_socket", "models", "provider"} <= set(service_keys())


def test_docs_table_lists_every_service_key() -> None:
    text = DOCS.read_text()
    table = text[text.index("## Every `services` key") :]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \| (.*) \|$", table, re.MULTILINE)
    assert [key for key, _, _ in rows] == service_keys()
    # the table says what the importer does: regenerate it from SERVICE_KEYS when a rule changes
    assert {key: (handling, text) for key, handling, text in rows} == {
        key: (rule.handling, rule.pnr) for key, rule in SERVICE_KEYS.items()
    }


def test_cli_import_writes_into_a_folder_creates_missing_folders_and_refuses_an_unwritable_place(
    tmp_path: Path,
) -> None:
    from conftest import ROOT, pnr_cli

    compose_file = ROOT / "config" / "compose" / "chain.yml"
    folder = tmp_path / "out"
    folder.mkdir()
    into = pnr_cli("import", str(compose_file), "--name", "chained", "-o", str(folder))
    assert into.returncode == 0, into.stderr
    assert json.loads((folder / "chained.json").read_text())["name"] == "chained"
    nested = tmp_path / "a" / "b" / "d.json"
    made = pnr_cli("import", str(compose_file), "-o", str(nested))
    assert made.returncode == 0 and nested.is_file(), made.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused = pnr_cli("import", str(compose_file), "-o", str(blocker / "d.json"))
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "Traceback" not in refused.stderr and f"{blocker / 'd.json'}: cannot write the domain here" in refused.stderr
