"""The one exception tree of pnr.

    PnrError
    ├── ConfigError          bad input: a config file, a flag, a signal value (CLI exit 2)
    ├── EngineError          the container engine refused or is unreachable (translated docker errors)
    │   ├── EngineUnreachable  an engine does not answer (names the engine, and the chunks on it in a run)
    │   └── ImageError       an image is neither local, buildable nor pullable
    └── RunError             a bring-up did not complete (CLI exit 1)
        ├── ChunkFailed      a chunk's container died or its readiness probe gave up
        ├── StallError       no chunk can make progress: gates that can never open
        └── RunTimeout       the run's deadline passed (typically an external signal never came)

Docker errors are translated at one boundary (`pnr.engines.engine`), HTTP/socket errors in `pnr.probes`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# a key printed bare in a JSON path: a name (`env.DB_URL`, `depends-on`) or a whole number (`ports.8080`); anything
# else — dots, spaces, signs, exponents, control characters, the empty key — is quoted, so a path is one
# unambiguous printable line
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*|[0-9]+(?:/[a-z]+)?")


def path_join(parent: str, key: str | int) -> str:
    """`cpuxs` + `web` → `cpuxs.web`; an index → `[0]`; any other key quoted: `env["0\\n"]`, `labels["io.x"]`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _BARE_KEY.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


class PnrError(Exception):
    """Root of every error pnr raises on purpose. `exit_status`: what the CLI exits with when this ends a command
    (1: the run or the engine failed; `ConfigError`: 2, bad input)."""

    exit_status = 1


def exit_status_of(exc: BaseException) -> int:
    """The one rule mapping an error to the CLI's exit status: a pnr error's own, 130 for Ctrl-C, else 1."""
    if isinstance(exc, PnrError):
        return exc.exit_status
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in an input file: where it is and what to do about it."""

    path: str  # JSON path inside the file, e.g. "cpuxs.stack_startup.design_chunks[0].name"
    message: str

    def render(self, source: str) -> str:
        where = f"{source}: {self.path}" if self.path else source
        return f"{where}: {self.message}"


class ConfigError(PnrError):
    """A config (or other user input) is invalid. Carries every issue found, not just the first."""

    exit_status = 2

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__("\n".join(issue.render(source) for issue in issues))


class EngineError(PnrError):
    """The container engine failed; the message says what pnr was doing and what to try."""


class EngineUnreachable(EngineError):
    """A Docker engine does not answer (stopped, gone mid-run, wrong address). `engine` names it in the config
    (`default`: the environment's engine)."""

    def __init__(self, message: str, engine: str = "default") -> None:
        super().__init__(message)
        self.engine = engine


class NameInUse(EngineError):
    """Creating a container failed: a container of that name exists (made since pnr last looked)."""


class ImageError(EngineError):
    """An image is not available locally, has no build_path, and could not be pulled."""


class RunError(PnrError):
    """A run ended without every chunk completed."""


class ChunkFailed(RunError):
    """A chunk failed: its container exited, or its probe gave up (see the message for the last observation)."""


class StallError(RunError):
    """Nothing is running and some gate can never open."""


class RunTimeout(RunError):
    """The run's deadline passed before every chunk completed."""


@dataclass
class BlockedChunk:
    """A chunk that waits on signals, with their current and expected values (for stall messages)."""

    chunk: str
    waits_on: dict[str, tuple[str, str]] = field(default_factory=dict)  # signal -> (current tv, expected tv)
    external: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"{name} is {cur} (needs {exp})" for name, (cur, exp) in self.waits_on.items()]
        return f"{self.chunk} waits on " + ", ".join(parts)
