"""`pnr import`: a compose project as a pnr domain config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pnr.cli.common import err, escape, fail, fail_with, out
from pnr.exceptions import ConfigError

if TYPE_CHECKING:
    from pnr.compose.importer import ComposePaths

ComposeArg = Annotated[
    Path | None,
    typer.Argument(
        help="a compose file, or a folder with compose.yaml / docker-compose.yml; its override file is read "
        "too, as compose does [default: the current folder]",
        show_default=False,
    ),
]
FileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--file", "-f", metavar="FILE", help="a compose file (repeatable: merged in order, as docker compose -f)"
    ),
]
OutputOpt = Annotated[
    str | None,  # not a Path: a trailing "/" (a folder) must survive
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="write the domain to this file, or into this folder (a name ending in /) as <project>.json "
        "[default: stdout]",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="overwrite an existing output file")]
NameOpt = Annotated[
    str | None,
    typer.Option(
        help="project (domain) name [default: COMPOSE_PROJECT_NAME, else the file's name:, else its folder's]"
    ),
]
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option("--profile", help="enable a compose profile (repeatable; '*' for all) [default: COMPOSE_PROFILES]"),
]


def import_(
    compose_file: ComposeArg = None,
    file: FileOpt = None,
    output_arg: OutputOpt = None,
    force: ForceOpt = False,
    name: NameOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Translate a compose project into a pnr domain config: depends_on conditions become gates, healthchecks
    become probes. Every key pnr treats differently is reported on stderr with its path (see docs/compose.md)."""
    from pnr.compose import import_compose

    if compose_file is not None and file:
        raise fail_with(2, "give the compose file either as an argument or with -f, not both")
    source: ComposePaths = list(file) if file else (compose_file or Path.cwd())
    output = Path(output_arg) if output_arg else None
    into_folder = output is not None and (output.is_dir() or str(output_arg).endswith(("/", os.sep)))
    try:
        where = (output.resolve() if into_folder else output.resolve().parent) if output else None
        result = import_compose(source, name, profiles=profile or (), output_dir=where)
    except ConfigError as exc:
        raise fail(exc) from None
    shown = str(result.files[0])
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note.render(shown))}")
    if output is None:
        print(result.to_json(), end="")
        return
    if into_folder:
        output = output / f"{result.domain['name']}.json"
    _write_domain(output, result.to_json(), force)
    chunks = sum(len(c["design_chunks"]) for c in result.domain["cpuxs"].values())
    read = " + ".join(str(f) for f in result.files)
    out.print(
        f"wrote {output} from {read}: domain {result.domain['name']}, {chunks} chunk(s), {len(result.notes)} "
        f"note(s); next: pnr up {output}"
    )


def _write_domain(output: Path, text: str, force: bool) -> None:
    """Write an imported domain; an existing file only with --force (exit 2 otherwise, nothing written)."""
    unwritable = f"{output}: cannot write the domain here ({{}}); give -o a writable file or folder"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail_with(2, unwritable.format(exc.strerror or exc)) from None
    try:
        with output.open("w" if force else "x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        raise fail_with(
            2, f"{output}: exists; give --force to overwrite it, --name for another project name, or another -o"
        ) from None
    except OSError as exc:
        raise fail_with(2, unwritable.format(exc.strerror or exc)) from None
