"""`pnr import` of a compose *project*: `.env`, several files and override files, `include`, project names,
YAML merge keys, build keys, and the import's check of its own output. No Docker needed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import pnr
from pnr.compose import import_compose
from pnr.exceptions import ConfigError
from tests.conftest import pnr_cli
from tests.unit.test_compose_import import chunks, issues, notes


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


DOTENV_PROJECT = {
    "compose.yaml": """
        services:
          db:
            image: "busybox:${TAG}"
            environment: [POSTGRES_PASSWORD, FROM_SHELL, NOWHERE]
          web:
            image: busybox:1
            environment:
              GREETING: "${GREETING}"
              LEVEL: "${LEVEL:-info}"
            depends_on: [db]
          debug:
            image: busybox:1
            profiles: [debug]
    """,
    ".env": """
        COMPOSE_PROFILES=debug
        TAG=1.36
        POSTGRES_PASSWORD=s3cr3t
        GREETING="hello ${TAG}"
        FROM_SHELL=from-dotenv
    """,
}


# -- .env ------------------------------------------------------------------------------------------------------
def test_dotenv_gives_profiles_values_and_becomes_the_domains_env_files(tmp_path: Path) -> None:
    folder = write(tmp_path / "My Project", DOTENV_PROJECT)
    result = import_compose(folder, environ={"FROM_SHELL": "shell"})
    assert result.project == "myproject"  # the folder's name, normalized as compose does
    assert set(chunks(result)) == {"db", "web", "debug"}  # COMPOSE_PROFILES from .env
    assert result.domain["env_files"] == [".env"]
    db = chunks(result)["db"]["container"]
    assert db["image"] == "busybox:1.36"  # interpolated when importing, from .env
    assert db["env"] == {
        "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}",
        "FROM_SHELL": "${FROM_SHELL}",
        "NOWHERE": "${NOWHERE:-}",
    }
    assert "taken from .env" in notes(result, "services.db.environment.POSTGRES_PASSWORD")[0]
    assert "taken from the environment" in notes(result, "services.db.environment.FROM_SHELL")[0]
    assert "unset in the shell and in .env" in notes(result, "services.db.environment.NOWHERE")[0]
    web = chunks(result)["web"]["container"]
    assert web["env"] == {"GREETING": "${GREETING}", "LEVEL": "${LEVEL:-info}"}  # resolved at up, not here
    assert not notes(result, "services.web.environment.GREETING")
    assert "s3cr3t" not in result.to_json()
    pnr.make_plan(pnr.parse_domain(json.loads(result.to_json())))


def test_the_shell_wins_over_dotenv_and_names_the_project(tmp_path: Path) -> None:
    folder = write(tmp_path / "p", DOTENV_PROJECT)
    result = import_compose(folder, environ={"COMPOSE_PROFILES": "", "TAG": "2", "COMPOSE_PROJECT_NAME": "Shell_Name"})
    assert set(chunks(result)) == {"db", "web"}  # an empty COMPOSE_PROFILES in the shell wins: no profile
    assert chunks(result)["db"]["container"]["image"] == "busybox:2"
    assert result.project == "shell_name"
    assert import_compose(folder, profiles=["debug"], environ={"COMPOSE_PROFILES": ""}).project == "p"


def test_env_files_are_written_relative_to_the_output_folder(tmp_path: Path) -> None:
    folder = write(tmp_path / "proj", DOTENV_PROJECT)
    result = import_compose(folder, output_dir=tmp_path / "out" / "deep", environ={})
    assert result.domain["env_files"] == ["../../proj/.env"]


# -- project names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name_key, dotenv, environ, expected",
    [
        ("", "", {}, "folder1"),  # "Folder.1": lower case, the dot dropped
        ("name: From-File\n", "", {}, "from-file"),
        ("name: from-file\n", "COMPOSE_PROJECT_NAME=dotenv\n", {}, "dotenv"),  # compose: the variable wins over name:
        ("name: from-file\n", "COMPOSE_PROJECT_NAME=dotenv\n", {"COMPOSE_PROJECT_NAME": "shell"}, "shell"),
    ],
)
def test_project_name_as_compose_takes_it(
    tmp_path: Path, name_key: str, dotenv: str, environ: dict[str, str], expected: str
) -> None:
    folder = write(tmp_path / "Folder.1", {"compose.yaml": name_key + "services:\n  a: {image: x}\n", ".env": dotenv})
    assert import_compose(folder, environ=environ).project == expected


def test_a_long_default_container_name_is_valid(tmp_path: Path) -> None:
    """Docker accepts container names of any length: compose's `<project>-<service>-1` is kept as it is."""
    service = "subscription-consumer-generic-metrics-counters"
    folder = write(tmp_path / "self-hosted-snuba", {"compose.yaml": f"services:\n  {service}: {{image: x}}\n"})
    result = import_compose(folder, environ={})
    name = chunks(result)[service]["container"]["name"]
    assert name == f"self-hosted-snuba-{service}-1" and len(name) > 63
    pnr.parse_domain(result.domain)


# -- several files ------------------------------------------------------------------------------------------------
BASE = """
    services:
      web:
        image: web:1
        command: [serve, --port, "80"]
        environment: {A: "1", B: "1"}
        ports: ["127.0.0.1:8080:80", "9090:90"]
        volumes: ["./a:/data", "./logs:/logs"]
        labels: [x=1]
"""
OVERRIDE = """
    services:
      web:
        command: [serve, --debug]
        environment: [B=2, C=3]
        ports: ["127.0.0.1:8080:80", "9191:91"]
        volumes: ["./b:/data"]
        labels: {y: "2"}
      extra:
        image: extra:1
        depends_on: [web]
"""


def test_files_merge_by_the_compose_rules(tmp_path: Path) -> None:
    folder = write(tmp_path / "proj", {"base.yml": BASE, "more.yml": OVERRIDE})
    result = import_compose([folder / "base.yml", folder / "more.yml"], environ={})
    web = chunks(result)["web"]["container"]
    assert web["command"] == ["serve", "--debug"]  # shell commands: the later file's replaces
    assert web["env"] == {"A": "1", "B": "2", "C": "3"}  # list-or-mapping keys merge as mappings
    assert web["ports"] == {"80": "127.0.0.1:8080", "90": "9090", "91": "9191"}  # unique by address and ports
    assert web["volumes"] == ["./b:/data", "./logs:/logs"]  # unique by target: the later one, in its place
    assert web["labels"] == {"x": "1", "y": "2"}
    assert list(chunks(result)["extra"]["gatekeeper"]) == ["web_started"]
    assert result.files == [folder / "base.yml", folder / "more.yml"]


@pytest.mark.parametrize(
    "main, override", [("compose.yaml", "compose.override.yaml"), ("docker-compose.yml", "docker-compose.override.yml")]
)
def test_the_override_file_is_read_by_itself(tmp_path: Path, main: str, override: str) -> None:
    folder = write(tmp_path / "proj", {main: BASE, override: OVERRIDE})
    for given in (folder, folder / main):
        result = import_compose(given, environ={})
        assert set(chunks(result)) == {"web", "extra"}
        assert [p.name for p in result.files] == [main, override]
    alone = import_compose([folder / main], environ={})  # -f names the files: no override file
    assert set(chunks(alone)) == {"web"}


def test_an_error_in_an_override_file_names_its_line(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "proj",
        {"compose.yaml": BASE, "compose.override.yaml": "services:\n  web:\n    depends_on: [nope]\n"},
    )
    with pytest.raises(ConfigError) as exc:
        import_compose(folder, environ={})
    assert "undefined service 'nope' (compose.override.yaml line 3)" in issues(exc)["services.web.depends_on[0]"]


def test_include_brings_services_a_dependency_can_name(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "proj",
        {
            "compose.yaml": """
                include: [db/compose.yaml]
                services:
                  app: {image: app:1, depends_on: {db: {condition: service_healthy}}}
            """,
            "db/compose.yaml": """
                services:
                  db:
                    image: db:1
                    volumes: ["./data:/var/lib/db"]
                    healthcheck: {test: ["CMD", "true"], interval: 1s}
            """,
        },
    )
    result = import_compose(folder, environ={})
    c = chunks(result)
    assert list(c) == ["db", "app"] and list(c["app"]["gatekeeper"]) == ["db_healthy"]
    assert c["db"]["container"]["volumes"] == ["./db/data:/var/lib/db"]  # relative to the included file's folder
    clash = write(
        tmp_path / "clash",
        {
            "compose.yaml": "include: [other.yaml]\nservices:\n  a: {image: x}\n",
            "other.yaml": "services:\n  a: {image: y}\n",
        },
    )
    with pytest.raises(ConfigError) as exc:
        import_compose(clash, environ={})
    assert "service 'a' of 'other.yaml' is also defined here" in issues(exc)["include[0]"]


def test_an_include_of_the_wrong_shape_is_bad_input(tmp_path: Path) -> None:
    number = write(tmp_path / "number", {"compose.yaml": "include: [5]\nservices:\n  a: {image: x}\n"})
    with pytest.raises(ConfigError) as exc:
        import_compose(number, environ={})
    assert "must be a file path or a mapping with a path" in issues(exc)["include[0]"]
    listed = write(
        tmp_path / "listed",
        {"compose.yaml": "include: [other.yaml]\nservices:\n  a: {image: x}\n", "other.yaml": "services: [b]\n"},
    )
    with pytest.raises(ConfigError) as exc:
        import_compose(listed, environ={})
    assert "services must be a mapping, here and in 'other.yaml'" in issues(exc)["include[0]"]


# -- YAML merge keys -------------------------------------------------------------------------------------------
def test_the_earlier_mapping_of_a_merge_key_wins(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "proj",
        {
            "compose.yaml": """
                x-first: &first {image: first:1, user: "1000", environment: {A: first}}
                x-second: &second {image: second:1, working_dir: /second, environment: {A: second, B: second}}
                services:
                  a:
                    <<: [*first, *second]
                    user: "2000"
            """
        },
    )
    a = chunks(import_compose(folder, environ={}))["a"]["container"]
    assert a["image"] == "first:1" and a["working_dir"] == "/second" and a["user"] == "2000"
    assert a["env"] == {"A": "first"}  # the whole mapping of the first: merge keys do not merge deeper


# -- build and mounts ------------------------------------------------------------------------------------------
def test_build_keys_applied_or_refused_once(tmp_path: Path) -> None:
    folder = write(tmp_path / "proj", {"app/Dockerfile": "FROM scratch\n"})
    write(
        folder,
        {
            "compose.yaml": """
                services:
                  a: {build: {context: ./app, target: prod}}
                  b: {build: "https://github.com/example/repo.git#main"}
                  c: {build: {context: ./app, dockerfile_inline: "FROM scratch"}}
                  d:
                    image: x
                    volumes: [{type: volume, source: data, target: /d, volume: {subpath: sub}}]
                volumes: {data: {}}
            """
        },
    )
    with pytest.raises(ConfigError) as exc:
        import_compose(folder, environ={})
    found = issues(exc)
    assert set(found) == {
        "services.b.build",
        "services.c.build.dockerfile_inline",
        "services.d.volumes[0].volume.subpath",
    }
    assert "clone it" in found["services.b.build"]
    assert "API 1.45" in found["services.d.volumes[0].volume.subpath"]
    ok = write(
        tmp_path / "ok",
        {
            "app/Dockerfile": "FROM scratch\n",
            "compose.yaml": "services:\n  a: {build: {context: ./app, target: prod}}\n",
        },
    )
    assert chunks(import_compose(ok, environ={}))["a"]["container"]["build_target"] == "prod"


# -- the import checks its own output, and reports every problem at once --------------------------------------------
def test_what_the_model_refuses_is_refused_at_import(tmp_path: Path) -> None:
    folder = write(tmp_path / "proj", {"compose.yaml": 'services:\n  a: {image: x, command: "echo \'unbalanced"}\n'})
    with pytest.raises(ConfigError) as exc:
        import_compose(folder, environ={})
    ((path, message),) = issues(exc).items()
    assert path == "services.a" and "pnr's model refuses the generated container.command" in message


def test_every_problem_of_a_project_at_once(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "proj",
        {
            "compose.yaml": """
                services:
                  a: {image: x, depends_on: [nope], healthcheck: {test: [CMD, "true"], interval: forever}}
                  b: {image: x, ports: ["99999:1"], label_file: ./missing.labels}
                  c: {image: x, depends_on: [d]}
                  d: {image: x, depends_on: [c]}
            """
        },
    )
    with pytest.raises(ConfigError) as exc:
        import_compose(folder, environ={})
    found = issues(exc)
    assert "undefined service 'nope'" in found["services.a.depends_on[0]"]
    assert "not a duration" in found["services.a.healthcheck.interval"]
    assert "outside 1-65535" in found["services.b.ports[0]"]
    assert "label file './missing.labels' not found" in found["services.b.label_file"]
    assert any("dependency cycle" in m for m in found.values())


# -- the command ----------------------------------------------------------------------------------------------------
def test_cli_never_overwrites_an_output_file_silently(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        write(tmp_path / folder, {"compose.yaml": "services:\n  a: {image: x}\n"})
    out = tmp_path / "out"
    for folder in ("one", "two"):
        made = pnr_cli("import", str(tmp_path / folder), "-o", f"{out}/")
        assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in out.iterdir()) == ["one.json", "two.json"]  # named after each project
    (out / "one.json").write_text("mine")
    again = pnr_cli("import", str(tmp_path / "one"), "-o", f"{out}/")
    assert again.returncode == 2 and "exists; give --force" in again.stderr and "Traceback" not in again.stderr
    assert (out / "one.json").read_text() == "mine"
    forced = pnr_cli("import", str(tmp_path / "one"), "-o", f"{out}/", "--force")
    assert forced.returncode == 0 and json.loads((out / "one.json").read_text())["name"] == "one"


def test_cli_merges_files_given_with_f(tmp_path: Path) -> None:
    folder = write(tmp_path / "proj", {"base.yml": BASE, "more.yml": OVERRIDE})
    made = pnr_cli(
        "import", "-f", str(folder / "base.yml"), "-f", str(folder / "more.yml"), "-o", str(tmp_path / "d.json")
    )
    assert made.returncode == 0, made.stderr
    assert {c["name"] for c in json.loads((tmp_path / "d.json").read_text())["cpuxs"]["proj"]["design_chunks"]} == {
        "web",
        "extra",
    }
