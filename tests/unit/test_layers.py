"""The house keeps its shape: folders are layers, each imports only the layers below it, and no module keeps
a process-wide mutable registry of runs. Read from the source (ast), so a violation names file and line."""

from __future__ import annotations

import ast
from pathlib import Path

PNR = Path(__file__).resolve().parents[2] / "pnr"

# top to bottom; a module may import its own layer and any layer below it
LAYERS = ["cli", "backend", "prefect", "lifecycle", "probes", "engines", "runtime", "compose", "model", "base"]
BASE = {"exceptions", "locks", "processes", "records", "settings", "__init__"}


def _layer(module: str) -> str:
    """pnr.lifecycle.cpux -> lifecycle; pnr.exceptions -> base; pnr -> the package root (public surface)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return "base" if parts[1] in BASE else parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "pnr" and node.level == 0:
            # `from pnr import processes` imports a module, `from pnr import Engine` the package root
            found += [(node.lineno, f"pnr.{a.name}" if (PNR / f"{a.name}.py").exists() else "pnr") for a in node.names]
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "pnr"
        ):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "pnr"]
    return found


def _module_of(path: Path) -> str:
    rel = path.relative_to(PNR.parent).with_suffix("")
    return ".".join(rel.parts)


def test_each_layer_imports_only_layers_below_it() -> None:
    problems = []
    for path in sorted(PNR.rglob("*.py")):
        if path == PNR / "__init__.py":
            continue  # the package root re-exports the public surface
        mine = _layer(_module_of(path))
        for line, imported in _imports(path):
            theirs = _layer(imported)
            if theirs == "root":
                problems.append(f"{path.relative_to(PNR.parent)}:{line}: imports the package root `pnr`")
            elif LAYERS.index(theirs) < LAYERS.index(mine):
                problems.append(f"{path.relative_to(PNR.parent)}:{line}: {mine} imports {imported} (layer {theirs})")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    modules = {_module_of(p).removesuffix(".__init__") for p in PNR.rglob("*.py")}
    for path in PNR.rglob("*.py"):
        name = _module_of(path).removesuffix(".__init__")
        deps = set()
        for _line, imported in _imports(path):
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]
            if imported != name and not name.startswith(imported + "."):  # a package's own __init__ is not a cycle
                deps.add(imported)
        graph[name] = deps
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        seen[node] = 1
        for dep in sorted(graph.get(node, ())):
            if seen.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep] if dep in stack else [node, dep]
            if not seen.get(dep):
                cycle = visit(dep, [*stack, dep])
                if cycle:
                    return cycle
        seen[node] = 2
        return None

    for node in sorted(graph):
        if not seen.get(node):
            cycle = visit(node, [node])
            assert cycle is None, " -> ".join(cycle)


def test_no_module_level_mutable_registry_of_runs() -> None:
    """Module-level dicts/lists/sets are constants (upper case, filled once) or kinds, never runs or listeners."""
    suspicious = []
    for path in sorted(PNR.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            mutable = isinstance(value, (ast.Dict, ast.List, ast.Set)) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", "") in ("dict", "list", "set", "WeakSet")
            )
            for target in targets:
                name = getattr(target, "id", "")
                if mutable and not name.isupper() and name != "__all__":
                    suspicious.append(f"{path.relative_to(PNR.parent)}:{node.lineno}: {name}")
                if mutable and any(word in name.lower() for word in ("run", "listener", "watcher")):
                    suspicious.append(f"{path.relative_to(PNR.parent)}:{node.lineno}: {name} holds runs")
    assert not suspicious, "\n".join(suspicious)
