"""A domain's `env_files` and `pnr up --env-file`: where `${VAR}` in container env gets its value, with
compose's precedence (the environment wins over every file); `pnr validate` resolves every `${VAR}` as up does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pnr.exceptions import ConfigError
from pnr.model import check_config, domain_environ, parse_domain
from tests.conftest import pnr_cli


def domain(env: dict[str, str], env_files: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": "envfiles",
        "cpuxs": {
            "main": {"design_chunks": [{"name": "a", "container": {"name": "envfiles-a", "image": "x", "env": env}}]}
        },
    }
    if env_files is not None:
        out["env_files"] = env_files
    return out


def write_config(folder: Path, env: dict[str, str], env_files: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "domain.json"
    path.write_text(json.dumps(domain(env, env_files)))
    return path


def test_later_files_win_and_the_environment_wins_over_every_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "base.env").write_text("A=base\nB=base\nC=base\nREF=${A}-x\nLIT='${A}'\nDOLLAR=\"a\\$b\"\n")
    (tmp_path / "conf" / "more.env").write_text("export B=more\nC=more\n")
    (tmp_path / "extra.env").write_text("C=extra\n")
    config = tmp_path / "conf" / "domain.json"
    parsed = parse_domain(domain({}, ["base.env", "more.env"]))
    values = domain_environ(parsed, str(config), {"A": "shell"}, [str(tmp_path / "extra.env")])
    assert values["A"] == "shell" and values["B"] == "more" and values["C"] == "extra"
    assert values["REF"] == "shell-x"  # a file's ${VAR} takes the environment's value first, as compose
    assert values["LIT"] == "${A}" and values["DOLLAR"] == "a$b"


def test_a_missing_env_file_names_the_key_and_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"A": "${A}"}, [".env"])
    with pytest.raises(ConfigError) as exc:
        check_config(str(config), {})
    (issue,) = exc.value.issues
    assert exc.value.source == str(config) and issue.path == "env_files[0]"
    assert "env file '.env' not found" in issue.message and "create it, or remove it from env_files" in issue.message


def test_an_unset_variable_is_an_error_naming_variable_path_and_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"PASSWORD": "${DB_PASSWORD}", "LEVEL": "${LEVEL:-info}"})
    with pytest.raises(ConfigError) as exc:
        check_config(str(config), {})
    (issue,) = exc.value.issues
    assert issue.path == "cpuxs.main.design_chunks[0].container.env.PASSWORD"
    assert (
        "'DB_PASSWORD' is not set" in issue.message and "env_files" in issue.message and "--env-file" in issue.message
    )
    (tmp_path / ".env").write_text("DB_PASSWORD=s3cr3t\n")
    config = write_config(tmp_path, {"PASSWORD": "${DB_PASSWORD}"}, [".env"])
    assert check_config(str(config), {}).domain.env_files == [".env"]


def test_validate_resolves_variables_as_up_does(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"PASSWORD": "${PNR_TEST_UNSET_PASSWORD}"})
    refused = pnr_cli("validate", str(config))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        f"{config}: cpuxs.main.design_chunks[0].container.env.PASSWORD: variable 'PNR_TEST_UNSET_PASSWORD'"
        in refused.stderr
    )
    (tmp_path / "secrets.env").write_text("PNR_TEST_UNSET_PASSWORD=x\n")
    assert pnr_cli("validate", str(config), "--env-file", str(tmp_path / "secrets.env")).returncode == 0
    exported = pnr_cli("validate", str(config), env={"PNR_TEST_UNSET_PASSWORD": "y"})
    assert exported.returncode == 0, exported.stderr
