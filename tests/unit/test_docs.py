"""The docs stay true: every link, anchor, repository path, `pnr.*` module and CLI option they name exists."""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from pnr.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# The changelog names modules and paths as they were in earlier versions: links only.
LINKED = [*DOCS, ROOT / "CHANGELOG.md"]

# Path-like names in the docs that are a user's own files or created at run time, not repository files.
EXAMPLE_PATHS = {
    "config/my_stack.json",
}
# Top-level folders and files whose names, in backticks, are taken as repository paths.
REPO_DIRS = ("pnr", "docs", "config", "scripts", "tests", "flows", "bench")
REPO_FILES = ("README.md", "CHANGELOG.md", "LICENSE", "prefect.yaml", "pyproject.toml")
# `pnr.x` names that are Prefect event names or labels, not modules.
EVENT_ROOTS = {"signal", "chunk", "domain", "cpux", "tv", "bench"}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PATH = re.compile(rf"(?:{'|'.join(REPO_DIRS)})/[\w./*-]*|(?:{'|'.join(re.escape(f) for f in REPO_FILES)})")
MODULE = re.compile(r"(?<![\w./-])pnr(?:\.[A-Za-z_]\w*)+")


def _rel(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def _prose(text: str) -> str:
    """The text without fenced code blocks (links and anchors are not looked for in code)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _code_words(text: str) -> Iterator[str]:
    """Words of inline code spans and of fenced code blocks."""
    for span in CODE_SPAN.findall(_prose(text)):
        yield from span.split()
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        yield from block.split()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


@cache
def _anchors(doc: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(doc.read_text()).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*$", line)
        if match:
            slug = _slug(match.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(anchors)


def _links(doc: Path) -> Iterator[str]:
    yield from LINK.findall(_prose(doc.read_text()))


@pytest.mark.parametrize("doc", LINKED, ids=_rel)
def test_relative_links_and_anchors_resolve_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in _anchors(file)):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_rel(file)}")
    assert not broken, f"{_rel(doc)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_repository_paths_named_in_code_exist(doc: Path) -> None:
    missing = []
    for word in _code_words(doc.read_text()):
        match = PATH.fullmatch(word.strip(".,;:()'\"").split("::")[0].removesuffix(":"))
        if match is None or match.group() in EXAMPLE_PATHS:
            continue
        name = match.group().rstrip("/")
        if not any(ROOT.glob(name)) if "*" in name else not (ROOT / name).exists():
            missing.append(name)
    assert not missing, f"{_rel(doc)} names paths that do not exist: {sorted(set(missing))}"


def _top_level_names(origin: str) -> set[str]:
    """Names a module defines or imports at its top level (also under `if`/`try`), and its `__all__`."""
    names: set[str] = set()
    nodes = list(ast.parse(Path(origin).read_text()).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If | ast.Try):
            nodes.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                names.update(ast.literal_eval(node.value))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _resolves(dotted: str) -> bool:
    """`pnr.a.b` is a module, or a module and then a name defined at its top level."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        origin = _module_origin(".".join(parts[:i]))
        if origin is None:
            continue
        rest = parts[i:]
        return not rest or rest[0] in _top_level_names(origin)
    return False


@cache
def _module_origin(module: str) -> str | None:
    """The file of a module that exists (without importing it), else None."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a parent is a module, not a package
        return None
    return None if spec is None else spec.origin


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_pnr_modules_named_exist(doc: Path) -> None:
    names = {m for word in _code_words(doc.read_text()) for m in MODULE.findall(word)}
    unknown = sorted(n for n in names if n.split(".")[1] not in EVENT_ROOTS and not _resolves(n))
    assert not unknown, f"{_rel(doc)} names modules or names that do not exist: {unknown}"


def _commands(group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(`pnr a b`, command) for every command; typer's groups and commands are click's (vendored or not)."""
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield path, command


def _cli_rows(name: str) -> str:
    """The rows of README.md's CLI table whose first cell shows `name` (`pnr up CONFIG ...`), joined."""
    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        first = re.match(r"\|(.*?)(?<!\\)\|", line)
        if first and re.search(rf"`{re.escape(name)}[ `]", first.group(1)):
            rows.append(line)
    return "\n".join(rows)


_ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = [("pnr", _ROOT_COMMAND), *_commands(_ROOT_COMMAND, "pnr")]


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_option_of_a_command_is_in_the_readme_cli_table(name: str, command: Any) -> None:
    row = _cli_rows(name)
    assert row, f"README.md's CLI table has no row for `{name}`"
    options = [o for p in command.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")]
    missing = [o for o in options if not re.search(rf"{re.escape(o)}(?![\w-])", row)]
    assert not missing, f"README.md's row for `{name}` lacks {missing}"


def test_every_option_the_readme_cli_table_shows_exists() -> None:
    options = {name: {o for p in c.params if p.param_type_name == "option" for o in p.opts} for name, c in COMMANDS}
    wrong = []
    for line in (ROOT / "README.md").read_text().splitlines():
        first = re.match(r"\|(.*?)(?<!\\)\|", line)
        if not first or "`pnr" not in first.group(1):
            continue
        shown = [c for c in options if c != "pnr" and re.search(rf"`{re.escape(c)}[ `]", first.group(1))]
        known = set().union(*(options[c] for c in shown or ["pnr"]))
        wrong += [
            f"{o} ({', '.join(shown)})"
            for o in re.findall(r"(?<![\w-])--?[a-z][\w-]*", first.group(1))
            if o not in known
        ]
    assert not wrong, f"README.md's CLI table shows options the commands do not have: {wrong}"


def test_version_prints_pnr_prefect_and_docker_py() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"pnr {version('pnr')}"
    assert f"prefect {version('prefect')}" in result.output
    assert f"docker-py {version('docker')}" in result.output


def test_version_through_the_installed_command() -> None:
    import subprocess
    import sys
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "pnr.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"pnr {version('pnr')}"


def test_changelog_top_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    top = re.search(r"^## \[?(\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert top is not None, "CHANGELOG.md has no `## X.Y.Z` heading"
    assert top.group(1) == pyproject["version"]


def test_package_metadata_points_inside_the_repository() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (ROOT / pyproject["readme"]).is_file()
    assert "MIT" in pyproject["license"]["text"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    for url in pyproject.get("urls", {}).values():
        assert not url.startswith(("..", "/", "file:")), url


def test_the_quick_start_example_plans_with_public_images_only() -> None:
    """config/quickstart.json (README's first command) validates and plans: redis first, then the UI that waits on
    it; every image is a public one (pulled from a registry, not built by the repository's scripts)."""
    import json

    from pnr.model.plan import load_plan

    plan = json.loads(load_plan(str(ROOT / "config" / "quickstart.json")).render_json())
    assert plan["levels"] == {"startup": [["redis"], ["ui"]]}
    assert not [s for s, v in plan["signals"].items() if v["external"]]
    images = [
        c["container"]["image"]
        for c in json.loads((ROOT / "config" / "quickstart.json").read_text())["cpuxs"]["startup"]["design_chunks"]
    ]
    assert images and not [i for i in images if i.startswith(("pnr-test/", "pnr-demo/"))], images


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_docs_speak_of_the_product_not_of_its_making(doc: Path) -> None:
    history = re.compile(
        r"\bthe seed\b|\bseed's\b|\bGo program\b|\bissue \d+|\bsession \d+|\bthe \w+ session\b|\bother sessions\b",
        re.I,
    )
    found = sorted({m.group() for m in history.finditer(doc.read_text())})
    assert not found, f"{_rel(doc)} speaks of how pnr was made: {found}"


def test_the_readme_reaches_the_end_of_its_quick_start_within_1200_words() -> None:
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("\n## ", 3)
    assert quick_start[2].startswith("Quick start"), "README.md: the quick start is the second section"
    words = len("\n## ".join(quick_start[:3]).split())
    assert words <= 1200, f"README.md: {words} words to the end of the quick start"


def test_every_ui_screenshot_the_docs_show_is_made_by_the_screenshot_script() -> None:
    script = (ROOT / "scripts" / "screenshot_ui.sh").read_text()
    shown = {Path(t).name for doc in DOCS for t in _links(doc) if re.search(r"img/ui-[\w-]+\.png$", t)}
    assert shown, "no UI screenshot found in the docs"
    assert not [n for n in sorted(shown) if f"/{n}" not in script], "scripts/screenshot_ui.sh does not make them"
    unused = {p.name for p in (ROOT / "docs" / "img").glob("ui-*.png")} - shown
    assert not unused, f"docs/img holds screenshots no doc shows: {sorted(unused)}"


def _flow_parameters(function: str) -> list[str]:
    tree = ast.parse((ROOT / "pnr" / "prefect" / "flows.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    return [a.arg for a in node.args.args]


@pytest.mark.parametrize(("flow", "function"), [("pnr-up", "bring_up"), ("pnr-down", "tear_down")])
def test_the_flows_parameters_are_documented_as_they_are(flow: str, function: str) -> None:
    real = _flow_parameters(function)
    readme = re.search(rf"`{function}\((.*?)\)`", (ROOT / "README.md").read_text())
    assert readme is not None, f"README.md does not show `{function}(...)`"
    assert [p.split("=")[0].strip() for p in readme.group(1).split(",")] == real, f"README.md: {function}"
    row = re.search(
        rf"^\| flow run `{flow}`[^|]*\|.*\(parameters: (.*?)\) \|$", (ROOT / "docs/prefect.md").read_text(), re.M
    )
    assert row is not None, f"docs/prefect.md has no row for flow run `{flow}` with its parameters"
    assert re.findall(r"`(\w+)`", row.group(1)) == real, f"docs/prefect.md: {flow}"
