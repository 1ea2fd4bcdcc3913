"""What an import reports: notes (what pnr does differently) and issues (why it cannot import), by path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pnr.compose._yaml import YamlDoc
from pnr.exceptions import ConfigError, ConfigIssue


@dataclass(frozen=True)
class Note:
    """Something in the compose file that pnr does differently or not at all, and what pnr does instead."""

    path: str  # where in the compose file, e.g. "services.web.deploy.resources"
    message: str

    def render(self, source: str = "") -> str:
        where = ": ".join(p for p in (source, self.path) if p)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class Report:
    """The notes and issues of one import; `doc` knows the line of each path (for messages)."""

    source: str
    doc: YamlDoc = field(default_factory=lambda: YamlDoc(None))
    notes: list[Note] = field(default_factory=list)
    issues: list[ConfigIssue] = field(default_factory=list)

    def note(self, path: str, message: str) -> None:
        self.notes.append(Note(path, message))

    def fail(self, path: str, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def check(self) -> None:
        """Raise every issue found so far (ConfigError), if any."""
        if self.issues:
            raise ConfigError(self.source, self.issues)

    def sorted_notes(self) -> list[Note]:
        """The notes in file order (stable)."""
        return sorted(self.notes, key=lambda note: self.doc.line_of(note.path) or 1 << 30)


@dataclass
class Context:
    """What the per-key rules of one import share: the report, the project and where the domain file goes."""

    report: Report
    folder: Path  # the project folder: relative host paths start here
    out_dir: Path  # the domain file's folder: host paths are written relative to it
    project: str = ""
    env: dict[str, str] = field(default_factory=dict)  # interpolation values (.env under the shell)
    dotenv_keys: frozenset[str] = frozenset()  # variables whose value comes from the project's .env

    def note(self, path: str, message: str) -> None:
        self.report.note(path, message)

    def fail(self, path: str, message: str) -> None:
        self.report.fail(path, message)
