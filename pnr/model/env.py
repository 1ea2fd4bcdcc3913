"""`${VAR}` / `${VAR:-default}` in a chunk's container env, taken from the host environment at start time,
so secrets stay out of config files (and out of labels, runtime files and artifacts)."""

from __future__ import annotations

import os
import re

from pnr.exceptions import ConfigError, ConfigIssue
from pnr.model.domain import DesignChunk

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(
    chunk: DesignChunk, path: str, environ: dict[str, str] | None = None, source: str = "<config>"
) -> dict[str, str]:
    """Container env with `${VAR}` / `${VAR:-default}` taken from the host environment (secrets stay out of configs)."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    missing: list[ConfigIssue] = []
    for key, value in chunk.container.env_map().items():

        def sub(m: re.Match[str], key: str = key) -> str:
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return str(default)
            hint = f"host environment variable {name!r} is not set; export it or write ${{{name}:-default}}"
            missing.append(ConfigIssue(f"{path}.container.env.{key}", hint))
            return ""

        out[key] = _VAR_RE.sub(sub, value)
    if missing:
        raise ConfigError(source, missing)
    return out
