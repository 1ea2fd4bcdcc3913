"""`${VAR}` / `${VAR:-default}` in a chunk's container env, taken at start time from the environment of `pnr up`
and the domain's `env_files` (the environment wins, as in compose), so secrets stay out of config files (and
out of labels, runtime files and artifacts).

`${chunk:NAME.host}` and `${chunk:NAME.port:KEY}` refer to another chunk: the address where its engine's
published ports are reached, and the host port published for its `container.ports` key KEY. Chunks on
different engines share no Docker network; this is how one finds the other. Checked by the plan (the chunk
exists, KEY is one of its ports); resolved at start time by a resolver the lifecycle passes in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pnr.exceptions import ConfigError, ConfigIssue
from pnr.model.container import PortBinding
from pnr.model.domain import DesignChunk, Domain
from pnr.model.envfile import EnvFileError, parse_env_file

# one pass over both kinds, so a substituted value is never scanned again; `${chunk:-x}` stays a ${VAR:-default}
_VAR_RE = re.compile(r"\$\{(?:chunk:(?!-)(?P<ref>[^}]*)|(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?)\}")
_REF_BODY_RE = re.compile(r"^(?P<chunk>[^:]+)\.(?:(?P<host>host)|port:(?P<key>[^:]+))$")
# in an env file's values: `$$` is a literal `$`, `${VAR}` / `${VAR:-default}` come from the lines above or the
# environment (an unset one is empty, as in compose)
_FILE_VAR_RE = re.compile(r"\$\$|\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class ChunkReference:
    """`${chunk:db.host}` or `${chunk:db.port:27017}`."""

    chunk: str
    what: Literal["host", "port"]
    port_key: str | None = None

    def __str__(self) -> str:
        return "${chunk:" + self.chunk + (".host" if self.what == "host" else f".port:{self.port_key}") + "}"


ChunkResolver = Callable[[ChunkReference], str]


def parse_chunk_reference(body: str) -> ChunkReference:
    """The part after `${chunk:` (without the closing brace); ValueError says how to write it."""
    m = _REF_BODY_RE.match(body.strip())
    if not m:
        raise ValueError(
            f"${{chunk:{body}}} is not a chunk reference: write ${{chunk:NAME.host}} or ${{chunk:NAME.port:KEY}} "
            "(KEY: a key of that chunk's container.ports)"
        )
    if m["host"]:
        return ChunkReference(m["chunk"], "host")
    return ChunkReference(m["chunk"], "port", m["key"])


def chunk_references(chunk: DesignChunk) -> list[tuple[str, ChunkReference | ValueError]]:
    """Every `${chunk:...}` in a chunk's env: (env key, the reference or why it is malformed)."""
    found: list[tuple[str, ChunkReference | ValueError]] = []
    for key, value in chunk.container.env_map().items():
        for m in _VAR_RE.finditer(value):
            if m["ref"] is None:
                continue
            try:
                found.append((key, parse_chunk_reference(m["ref"])))
            except ValueError as exc:
                found.append((key, exc))
    return found


def find_port_key(bindings: dict[str, PortBinding], key: str) -> str | None:
    """The key of `bindings` that `key` names: itself, or the same port written with/without `/tcp`."""
    if key in bindings:
        return key
    port, _, proto = key.partition("/")
    for name, b in bindings.items():
        if str(b.container_port) == port and b.protocol == (proto or "tcp"):
            return name
    return None


def expand_env(
    chunk: DesignChunk,
    path: str,
    environ: dict[str, str] | None = None,
    source: str = "<config>",
    resolve: ChunkResolver | None = None,
) -> dict[str, str]:
    """Container env with `${VAR}` / `${VAR:-default}` taken from the host environment (secrets stay out of
    configs) and, given `resolve`, `${chunk:...}` references resolved (without it they are left as written)."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    missing: list[ConfigIssue] = []
    for key, value in chunk.container.env_map().items():

        def sub(m: re.Match[str], key: str = key) -> str:
            if m["ref"] is not None:
                if resolve is None:
                    return m.group(0)
                try:
                    return resolve(parse_chunk_reference(m["ref"]))
                except (ValueError, KeyError) as exc:
                    missing.append(ConfigIssue(f"{path}.container.env.{key}", str(exc).strip("'\"")))
                    return ""
            name, default = m["var"], m["default"]
            if name in environ:
                return environ[name]
            if default is not None:
                return str(default)
            hint = (
                f"variable {name!r} is not set in the environment nor in the domain's env_files; export it, "
                f"add {name}=VALUE to an env file of env_files (or pnr up --env-file), or write ${{{name}:-default}}"
            )
            missing.append(ConfigIssue(f"{path}.container.env.{key}", hint))
            return ""

        out[key] = _VAR_RE.sub(sub, value)
    if missing:
        raise ConfigError(source, missing)
    return out


def domain_environ(
    domain: Domain,
    config_path: str,
    environ: Mapping[str, str] | None = None,
    extra_files: Sequence[str] = (),
) -> dict[str, str]:
    """The variables `${VAR}` in container env is taken from: the domain's `env_files` (relative to the config
    file), then `extra_files` (`pnr up --env-file`, relative to the working folder) — a later file wins —
    and over every file `environ` (default: this process's), as compose lets the shell win over `.env`.
    ConfigError (naming the config file and `env_files[i]`) for a file missing, unreadable or malformed."""
    env = dict(os.environ if environ is None else environ)
    folder = Path(config_path).resolve().parent
    files = [(folder / name, f"env_files[{i}]", name) for i, name in enumerate(domain.env_files)]
    files += [(Path(name).resolve(), "--env-file", name) for name in extra_files]
    values: dict[str, str] = {}
    issues: list[ConfigIssue] = []
    for path, where, shown in files:
        problem = _read_env_file(path, shown, values, env)
        if problem:
            fix = "create it, or remove it from env_files" if where != "--env-file" else "give an existing file"
            issues.append(ConfigIssue(where, f"{problem}; {fix}" if "not found" in problem else problem))
    if issues:
        raise ConfigError(str(config_path), issues)
    return {**values, **env}


def _read_env_file(path: Path, shown: str, values: dict[str, str], env: Mapping[str, str]) -> str | None:
    """Add the assignments of one env file to `values`; or say why it cannot be read."""
    try:
        lines = parse_env_file(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"env file {shown!r} not found (looked for {path})"
    except (OSError, UnicodeDecodeError) as exc:
        return f"env file {shown!r} cannot be read: {exc}"
    except EnvFileError as exc:
        return f"env file {shown!r}: {exc}"
    for line in lines:
        if line.value is None:  # a bare KEY takes the environment's value, which wins anyway
            continue
        if line.literal:
            values[line.key] = line.value
            continue
        known = {**values, **env}

        def sub(m: re.Match[str], known: dict[str, str] = known) -> str:
            if m["var"] is None:
                return "$"
            value = known.get(m["var"], "")
            return value if value or m["default"] is None else str(m["default"])

        values[line.key] = _FILE_VAR_RE.sub(sub, line.value)
    return None
