"""The command-line benchmark's Markdown section (bench/cli.py's results), for docs/benchmark.md to lead with.

    .venv/bin/python bench/cli_report.py [bench/results/cli-latest.json]          # print the section
    .venv/bin/python bench/cli_report.py --docs                                    # also put it in docs/benchmark.md

`--docs` replaces the block between the CLI_BEGIN / CLI_END markers in docs/benchmark.md, or inserts it after the
page's title; bench/report.py's render() keeps that block when it rewrites the page.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lower_bound import POLL

HERE = Path(__file__).resolve().parent
CLI_BEGIN = "<!-- cli-bench:begin (bench/cli_report.py) -->"
CLI_END = "<!-- cli-bench:end -->"
TOOL_LABEL = {
    "lower bound": "lower bound (`python bench/lower_bound.py`)",
    "docker-compose": "`docker-compose up -d` (+ until all healthy)",
    "pnr warm/managed": "`pnr up`, resident server + runner (`pnr server start`)",
    "pnr warm/external": "`pnr up`, PREFECT_API_URL → `prefect server start`",
    "pnr warm": "`pnr up`, warm server",
    "pnr ephemeral": "`pnr up`, temporary server (PNR_EPHEMERAL_SERVER=1)",
    "pnr first-run #1": "`pnr up`, first call on a new machine (no server, empty state)",
    "pnr first-run #2": "`pnr up`, the call right after",
}
TOOL_ORDER = list(TOOL_LABEL)


def key(rec: dict[str, Any]) -> str:
    return {"lower_bound": "lower bound", "compose": "docker-compose"}.get(rec["tool"], f"pnr {rec['mode']}")


def stats(given: Sequence[float | None]) -> dict[str, float] | None:
    values = [v for v in given if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _entry(runs: list[dict[str, Any]]) -> dict[str, Any]:
    # a call during which pnr's runner was replaced (pnr's code changed under a running bench) pays its start-up:
    # reported, not counted
    ok = [r for r in runs if "error" not in r and not r.get("backend_restarted")]
    failed = sum(1 for r in runs if "error" in r)
    entry: dict[str, Any] = {"n": len(ok), "failed": failed, "excluded": len(runs) - len(ok) - failed}
    for field in ("wall", "cpu", "server_cpu", "first_output", "first_start", "exit_after_completed", "teardown_wall"):
        entry[field] = stats([r.get(field) for r in ok])
    entry["cpu_total"] = stats([r["cpu"] + (r.get("server_cpu") or 0.0) for r in ok])
    entry["backend_restarts"] = sum(1 for r in runs if r.get("backend_restarted"))
    entry["load1"] = stats([r.get("load1") for r in runs])
    entry["left_server"] = any(r.get("left_server") for r in runs)
    entry["leftover_containers"] = sum(len(r.get("leftovers", {}).get("containers", [])) for r in runs)
    return entry


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Per stack and tool: wall/CPU statistics; per pnr mode: fixed cost and ratios; concurrency; scale."""
    by_stack: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in data["runs"]:
        by_stack.setdefault(rec["stack"], {}).setdefault(key(rec), []).append(rec)
    stacks: dict[str, Any] = {}
    for stack, tools in by_stack.items():
        table = {k: _entry(v) for k, v in tools.items()}
        lb, co = _med(table.get("lower bound")), _med(table.get("docker-compose"))
        for k, e in table.items():
            wall = _med(e)
            if k.startswith("pnr") and wall is not None:
                e["fixed_cost"] = wall - lb if lb is not None else None
            e["ratio_lb"] = wall / lb if wall is not None and lb else None
            e["ratio_compose"] = wall / co if wall is not None and co else None
            if k.startswith("pnr"):
                e["fixed_cost_paired"] = stats(_paired(tools[k], tools.get("lower bound", [])))
        stacks[stack] = {"chunks": tools[next(iter(tools))][0].get("chunks"), "tools": table}
    return {
        "stacks": stacks,
        "concurrency": _concurrency(data.get("concurrency")),
        "concurrency_outside": _concurrency(data.get("concurrency_outside")),
        "scale": _scale(data),
    }


def _paired(pnr: list[dict[str, Any]], lb: list[dict[str, Any]]) -> list[float]:
    """pnr wall − lower-bound wall of the same repetition (both counted)."""
    lbs = {r["repeat"]: r["wall"] for r in lb if "error" not in r}
    return [
        r["wall"] - lbs[r["repeat"]]
        for r in pnr
        if "error" not in r and not r.get("backend_restarted") and r["repeat"] in lbs
    ]


def _med(entry: dict[str, Any] | None) -> float | None:
    return entry["wall"]["median"] if entry and entry.get("wall") else None


def _concurrency(c: dict[str, Any] | None) -> dict[str, Any] | None:
    if not c:
        return None
    burst = [r["wall"] for b in c["bursts"] for r in b["runs"] if "error" not in r]
    burst_lb = [r["wall"] for b in c["bursts_lb"] for r in b if r["rc"] == 0]
    single = stats([r["wall"] for r in c["single"] if "error" not in r])
    single_lb = stats([r["wall"] for r in c["single_lb"] if "error" not in r])
    out = {
        "n": c["n"],
        "stack": c.get("stack", "chain3"),
        "mode": c.get("mode", "warm"),
        "single": single,
        "burst": stats(burst),
        "single_lb": single_lb,
        "burst_lb": stats(burst_lb),
        "failed": sum(1 for b in c["bursts"] for r in b["runs"] if "error" in r),
        "server_cpu_burst": stats([b["server_cpu"] for b in c["bursts"]]),
        "server_cpu_single": stats([r.get("server_cpu") for r in c["single"]]),
        "load1s": [b["load1"] for b in c["bursts"]],
    }
    rounds = c.get("rounds") or []
    if rounds:  # each round's burst against the one alone of the same round: the median round, and the range
        out["ratios"] = [r["pnr"] for r in rounds if r.get("pnr")]
        out["ratios_lb"] = [r["lower_bound"] for r in rounds if r.get("lower_bound")]
        out["ratio_median"] = statistics.median(out["ratios"]) if out["ratios"] else None
        out["ratio_lb"] = statistics.median(out["ratios_lb"]) if out["ratios_lb"] else None
        out["ratio_max"] = max(out["ratios"], default=None)
    elif single and out["burst"]:
        out["ratio_median"] = out["burst"]["median"] / single["median"]
        out["ratio_max"] = out["burst"]["max"] / single["median"]
    return out


FLOORS = ("prefect_floor",)  # one task run per container


def _scale(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per chunk count and server database: medians over the rounds (`--scale-repeats`), the lower bound's from
    the same rounds, and the overhead of each round against that round's lower bound (min–max)."""
    groups: dict[tuple[str, int, str | None], list[dict[str, Any]]] = {}
    for r in data.get("scale", []):
        kind = "lean" if r.get("variant") else r["tool"]
        database = None if kind == "lower_bound" else r.get("database", "sqlite")
        groups.setdefault((kind, r["chunks"], database), []).append(r)
    rows = []
    for (kind, n, database), runs in groups.items():
        if kind != "pnr":
            continue
        lbs = groups.get(("lower_bound", n, None), [])
        lb = stats([r["wall"] for r in lbs if "error" not in r])
        row: dict[str, Any] = {
            "chunks": n,
            "database": database,
            "lb_wall": lb["median"] if lb else None,
            "lb": lb,
            "error": next((r["error"] for r in runs + lbs if "error" in r), None),
            "load1": stats([r.get("load1") for r in runs]),
        }
        row["pnr"] = _beside(runs, lbs, lb, n) or None
        for tool in FLOORS:
            row[tool] = _beside(groups.get((tool, n, database), []), lbs, lb, n) or None
        row["lean"] = _beside(groups.get(("lean", n, database), []), lbs, lb, n) or None
        floor_runs = groups.get((FLOORS[0], n, database), [])
        row["vs_floor"] = [d / n for d in _paired(runs, floor_runs)] if all("repeat" in r for r in runs) else []
        rows.append(row)
    return rows


def _beside(
    runs: list[dict[str, Any]], lbs: list[dict[str, Any]], lb: dict[str, float] | None, n: int
) -> dict[str, Any]:
    """Runs on the same stack as the lower bound's (pnr's, the floor's, pnr's variant): median wall, median wall
    over the median lower bound per chunk, each round's own (wall − that round's lower bound) per chunk as
    min–max, and CPU per chunk (its own and its server's); {} if none succeeded."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {}
    wall = stats([r["wall"] for r in ok])
    own, server = stats([r.get("cpu", 0.0) for r in ok]), stats([r.get("server_cpu") or 0.0 for r in ok])
    paired = stats([d / n for d in _paired(ok, lbs)]) if all("repeat" in r for r in ok + lbs) else None
    out = {
        "wall": wall["median"] if wall else None,
        "walls": [round(r["wall"], 2) for r in ok],
        "per_chunk": (wall["median"] - lb["median"]) / n if wall and lb else None,
        "per_chunk_paired": paired,
        "own_cpu": own["median"] / n if own else 0.0,
        "server_cpu": server["median"] / n if server else 0.0,
    }
    out["cpu_per_chunk"] = out["own_cpu"] + out["server_cpu"]
    return out


def _x(v: float | None) -> str:
    return f"{v:.2f}×" if v is not None else "–"


def _sec(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.2f} s" if signed else f"{v:.2f} s"


def _header(data: dict[str, Any]) -> list[str]:
    m, a = data["machine"], data["args"]
    load = " / ".join(f"{x:.2f}" for x in m["load_before"])
    after = " / ".join(f"{x:.2f}" for x in m.get("load_after", []))
    backend = {
        "external": "external (`prefect server start` started by the bench, `pnr up` with PREFECT_API_URL)",
        "managed": "managed (`pnr server start`: server + runner, `pnr up` without PREFECT_API_URL)",
    }
    chosen = a.get("backends") or a.get("backend") or []  # `backend` is a list in newer results
    backends = ", ".join(backend.get(b, b) for b in ([chosen] if isinstance(chosen, str) else chosen)) or "none"
    return [
        f"Measured {data['date']} (run tag {data['tag']}, {data.get('duration_s', 0) / 60:.1f} min) on "
        f"{m['nproc']} cores ({m['cpu']}), {m['mem_mb'] // 1024} GB RAM, kernel {m['kernel']}; Docker {m['docker']}, "
        f"docker-compose {m['compose']}, Prefect {m['prefect']}, Python {m['python']}, pnr {m['pnr_git']}"
        f"{' (imported from a copy of pnr/ taken at the start)' if a.get('snapshot') else ''}. "
        f"Load average (1/5/15 min) before the run: **{load}**, after: {after}; containers of others running at "
        f"the start: {m['other_containers_running']}. Warm server(s): {backends}. "
        f"Repetitions: {a['repeats']}. Polling: pnr's probes every {a.get('pnr_probe_interval', 0.05):g} s, the "
        f"lower bound every {POLL:g} s, compose's healthchecks every {a.get('compose_interval', '1ms')}. "
        "Raw: `bench/results/cli-*.json`.",
        "",
        "Every figure is a whole process started from a shell (`bench/cli.py`): wall = spawn → exit (for "
        "docker-compose: → the later of its exit and every service answering), CPU = user + sys of the process and "
        "the children it waited for (`os.wait4`); *server CPU* = the CPU of the long-lived processes `pnr up` used "
        "during the call (the external server; or pnr's resident server and runner, which runs the flow when "
        "`pnr up` is its thin client); *total CPU* = both. "
        "Medians [min–max]. On a shared machine (load above) the figures are noisy: compare within one run.",
    ]


def _stack_table(name: str, st: dict[str, Any]) -> list[str]:
    lines = [
        f"#### {name} ({st['chunks']} chunks)",
        "",
        "| tool | wall to all ready | CPU | server CPU | total CPU | / lower bound | / compose | pnr − lower bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in sorted(st["tools"], key=lambda k: TOOL_ORDER.index(k) if k in TOOL_ORDER else 99):
        e = st["tools"][k]
        fail = f" ({e['failed']} failed)" if e["failed"] else ""
        fail += f" ({e['excluded']} not counted: runner replaced)" if e.get("excluded") else ""
        lines.append(
            f"| {TOOL_LABEL.get(k, k)}{fail} | {_s(e['wall'])} | {_s(e['cpu'])} | {_s(e['server_cpu'])} | "
            f"{_s(e['cpu_total']) if e['server_cpu'] else '–'} | "
            f"{_x(e['ratio_lb']) if k != 'lower bound' else '1'} | {_x(e['ratio_compose'])} | "
            f"{_sec(e.get('fixed_cost'), signed=True) if 'fixed_cost' in e else ''} |"
        )
    return [*lines, ""]


def _fixed_cost_table(summary: dict[str, Any]) -> list[str]:
    lines = [
        "#### Fixed cost: `pnr up` wall − lower-bound wall, same stack, same run",
        "",
        "| stack | pnr mode | difference of the medians | per repetition (pnr − lower bound of the same repetition) "
        "| pnr / lower bound | pnr / compose |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, st in summary["stacks"].items():
        for k, e in st["tools"].items():
            if k.startswith("pnr") and e.get("fixed_cost") is not None:
                pair = e.get("fixed_cost_paired")
                paired = f"{pair['median']:+.2f} s [{pair['min']:+.2f}…{pair['max']:+.2f}]" if pair else "–"
                lines.append(
                    f"| {name} | {k[4:]} | {_sec(e['fixed_cost'], signed=True)} | {paired} | {_x(e['ratio_lb'])} | "
                    f"{_x(e['ratio_compose'])} |"
                )
    return [*lines, ""] if len(lines) > 4 else []


def _first_call_table(data: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """The first call on a new machine against its floor: Prefect's server on an empty database (same run)."""
    lines = [
        "#### First call on a new machine: what it pays over a warm call, and what of that is Prefect's server",
        "",
        "*Prefect's app on pnr's template*: Prefect's own server app started as pnr starts its server (a copy of "
        "the migrated database pnr ships, pnr's server settings), until it has answered its first API call "
        "(FastAPI builds its routes on the first request); in brackets, until `/api/health` answered. The first "
        "call brings the domain up while pnr's server starts (docs/server.md, the first call), so the server's "
        "start is no longer paid on top of the warm call: the last column is the first call's cost over the warm "
        "call minus that start, negative where the start was hidden behind the bring-up.",
        "",
        "| stack | first call | warm call (median) | first − warm | bare `prefect server start` on an empty "
        "database, to healthy | Prefect's app on pnr's template, to its first API call (healthy) "
        "| first − warm − that |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in data["runs"]:
        if rec.get("mode") != "first-run #1" or "error" in rec:
            continue
        warm = next((e for k, e in summary["stacks"][rec["stack"]]["tools"].items() if k.startswith("pnr warm")), None)
        warm_wall = _med(warm)
        floor = rec.get("prefect_cold_start")
        app = rec.get("prefect_app_start") or {}
        extra = rec["wall"] - warm_wall if warm_wall is not None else None
        rest = extra - app["first_call"] if extra is not None and app else None
        app_cell = f"{_sec(app['first_call'])} ({_sec(app['healthy'])})" if app else "–"
        lines.append(
            f"| {rec['stack']} | {_sec(rec['wall'])} | {_sec(warm_wall)} | {_sec(extra, signed=True)} | "
            f"{_sec(floor)} | {app_cell} | {_sec(rest, signed=True)} |"
        )
    return [*lines, ""] if len(lines) > 4 else []


def _timeline_table(summary: dict[str, Any]) -> list[str]:
    lines = [
        "#### Where a `pnr up` process spends its time (medians, seconds since spawn)",
        "",
        "| stack | mode | first output (interpreter, imports, config) | first container start | "
        'exit after "completed" | wall | `pnr down` |',
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, st in summary["stacks"].items():
        for k, e in st["tools"].items():
            if not k.startswith("pnr") or not e["wall"]:
                continue
            med = {f: (e[f] or {}).get("median") for f in ("first_output", "first_start", "exit_after_completed")}
            lines.append(
                f"| {name} | {k[4:]} | {_sec(med['first_output'])} | {_sec(med['first_start'])} | "
                f"{_sec(med['exit_after_completed'])} | {_sec(e['wall']['median'])} | {_s(e['teardown_wall'])} |"
            )
    return [*lines, ""]


AT_REST_TARGET = "target: ≤ 0.5 % of one core and ≤ 300 MB in total"


def _at_rest_md(rest: dict[str, Any] | None) -> list[str]:
    """The warm backend idle after the stacks' runs: per process memory and CPU (bench/at_rest.py)."""
    if not rest:
        return []
    load = ", ".join(f"{x:.2f}" for x in rest["load_before"])
    lines = [
        f"#### At rest: the warm backend ({rest['backend']}) idle for {rest['seconds'] / 60:.1f} min after the "
        "stacks' runs",
        "",
        f"From /proc (smaps_rollup: PSS shares the pages forked members share; utime + stime; load before {load}; "
        f"{AT_REST_TARGET}).",
        "",
    ]
    from at_rest import table

    return [*lines, table(rest), ""]


def _concurrency_md(shapes: list[dict[str, Any] | None]) -> list[str]:
    """One table: per shape, `pnr up` and the lower bound, one alone and N at once."""
    shapes_run = [c for c in shapes if c]
    if not shapes_run:
        return []
    first = shapes_run[0]
    lines = [
        f"#### Concurrency: {first['n']} `pnr up`s of different 3-chunk domains at once, one warm server "
        f"({first['mode']})",
        "",
        "| | one alone | each of N at once | N at once / alone (median; slowest) | server CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in shapes_run:
        lb_ratio = c.get("ratio_lb") or _ratio(c["burst_lb"], c["single_lb"])
        lines += [
            f"| `pnr up` ({c['stack']}) | {_s(c['single'])} | {_s(c['burst'])} | "
            f"{_x(c.get('ratio_median'))}; {_x(c.get('ratio_max'))} | {_s(c['server_cpu_single'])} alone, "
            f"{_s(c['server_cpu_burst'])} for all N |",
            f"| lower bound ({c['stack']}) | {_s(c['single_lb'])} | {_s(c['burst_lb'])} | {_x(lb_ratio)} | |",
        ]
    rounds = [c for c in shapes_run if c.get("ratios")]
    if rounds:
        lines += [
            "",
            "Each round times one alone and N at once next to each other (the order reversed every other round); "
            "the ratio is the round's median run of the N over its one alone, the table's the median round and "
            "the slowest. Per round: "
            + "; ".join(
                f"{c['stack']} "
                + ", ".join(_x(x) for x in c["ratios"])
                + " (lower bound "
                + ", ".join(_x(x) for x in c["ratios_lb"])
                + ")"
                for c in rounds
            )
            + ".",
        ]
    failed = ", ".join(f"{c['failed']} ({c['stack']})" for c in shapes_run)
    loads = ", ".join(f"{x:.1f}" for c in shapes_run for x in c["load1s"])
    return [
        *lines,
        "",
        f"chain3: busybox httpd answering 1 s after its start, probed every 0.005 s; outside3: the outside harness's "
        f'chain (`sh -c "sleep 1; exec httpd"`, its port published as `PORT:PORT`, probed every 0.02 s). Failed '
        f"runs in the bursts: {failed}. Load average (1 min) at the bursts' start: {loads}.",
        "",
    ]


def _ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> float | None:
    return a["median"] / b["median"] if a and b else None


# -- Markdown ----------------------------------------------------------------------------------------------
def _s(st: dict[str, float] | None, unit: str = "s") -> str:
    if not st:
        return "–"
    if st["n"] == 1:
        return f"{st['median']:.2f} {unit}"
    return f"{st['median']:.2f} {unit} [{st['min']:.2f}–{st['max']:.2f}]"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def _scale_md(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "#### Scale: orchestration overhead per chunk through the command line",
        "",
        "Per chunk: median wall over the lower bound's median (same run; with `--scale-repeats` several rounds, the "
        "order reversed every other round, and in brackets each round's wall over that round's lower bound), and "
        "median CPU (the process's own plus the server's; pnr's "
        "*server CPU* includes its resident runner, which runs pnr's tasks). *Prefect floor* "
        "(`bench/prefect_floor.py`): the lower bound with each container's wait, start and probe run as one "
        "Prefect task of one flow run against the same server — what making each container a task run costs "
        "before any logic of pnr's own. The scale stacks have no probes, so a pnr chunk there is one task run too.",
        "",
        "*`PNR_CHUNK_EVENTS=false`*: the same `pnr up` without pnr's per-chunk events (`pnr.chunk.starting` / "
        "`.ready`, `pnr.signal.changed`: about three per chunk, each recorded by the server), in the same run.",
        "",
        "*pnr − floor*: each round's `pnr up` wall minus that round's floor wall, per chunk: what pnr adds over "
        "one task run per container, with the machine's hour and the lower bound's noise taken out.",
        "",
        "| chunks | server database | lower bound | Prefect floor | `pnr up` (warm) "
        "| pnr − floor, by round | `pnr up`, `PNR_CHUNK_EVENTS=false` |",
        "|---:|---|---:|---|---|---|---|",
    ]

    def by_round(diffs: list[float]) -> str:
        if not diffs:
            return "–"
        rounds = ", ".join(f"{d * 1000:+.0f}" for d in diffs)
        return f"{rounds} ms (median {statistics.median(diffs) * 1000:+.0f} ms)" if len(diffs) > 1 else f"{rounds} ms"

    def cell(r: dict[str, Any] | None) -> str:
        if not r or r.get("wall") is None:
            return "–"
        text = f"{_sec(r['wall'])}: {_ms(r['per_chunk'])}/chunk, CPU {_ms(r['cpu_per_chunk'])}/chunk"
        paired = r.get("per_chunk_paired")
        if paired and paired["n"] > 1:
            text += f" (rounds {_ms(paired['min'])} to {_ms(paired['max'])})"
        return text

    for r in rows:
        if r["error"] and r["pnr"] is None:
            lines.append(f"| {r['chunks']} | {r['database']} | failed: {r['error'][:200]} | | | | |")
            continue
        lb = r["lb"]
        lb_cell = _sec(r["lb_wall"]) + (f" ({_sec(lb['min'])}–{_sec(lb['max'])})" if lb and lb["n"] > 1 else "")
        lines.append(
            f"| {r['chunks']} | {r['database']} | {lb_cell} | "
            + " | ".join(cell(r[t]) for t in FLOORS)
            + f" | {cell(r['pnr'])} | {by_round(r['vs_floor'])} | {cell(r['lean'])} |"
        )
    return [*lines, ""]


def _observations(data: dict[str, Any]) -> list[str]:
    """What pnr printed that looks wrong, slow exits, things left behind."""
    runs = [r for r in data["runs"] + data.get("scale", []) + data.get("warmups", []) if r["tool"] == "pnr"]
    for key in ("concurrency", "concurrency_outside"):
        for b in (data.get(key) or {}).get("bursts", []):
            runs += b["runs"]
    lines: list[str] = []
    seen: Counter[str] = Counter()
    for r in runs:
        seen.update({line[:160] for line in r.get("suspects", [])})
    if seen:
        lines.append(f"- Suspicious lines printed by `pnr up` (in how many of its {len(runs)} calls):")
        lines += [f"  - {n}× `{line}`" for line, n in seen.most_common(8)]
    slow = [r["exit_after_completed"] for r in runs if (r.get("exit_after_completed") or 0) > 0.5]
    if slow:
        lines.append(
            f'- `pnr up` exited > 0.5 s after its "completed" line in {len(slow)} calls (max {max(slow):.1f} s).'
        )
    restarted = sum(1 for r in runs if r.get("backend_restarted"))
    if restarted:
        lines.append(
            f"- In {restarted} calls the resident server or runner was replaced during the call (e.g. the runner "
            "restarts when pnr's code changed): those calls include its start-up."
        )
    held = sum(1 for r in runs if r.get("pipes_open_after_exit"))
    if held:
        lines.append(f"- In {held} calls a child process kept `pnr up`'s stdout/stderr open after it had exited.")
    left = sum(len(r.get("leftovers", {}).get("containers", [])) for r in data["runs"] + data.get("scale", []))
    if left:
        lines.append(f"- The tools' own teardown left {left} containers behind (removed by the bench's label sweep).")
    failed = [r for r in runs if "error" in r]
    if failed:
        lines.append(f"- {len(failed)} `pnr up` calls failed; first: `{failed[0]['error'][:300]}`")
    notes = data.get("notes", [])
    stale = [n for n in notes if n.startswith("network ") and "has active endpoints" in n]
    if stale:  # one line: the same engine bug each time, after the lower bound's mass removal
        names = ", ".join(n.split()[1] for n in stale)
        lines.append(
            f'- {len(stale)} networks of the bench could not be removed (Docker 20.10 keeps stale "active '
            f'endpoints" after removing hundreds of containers at once; left for the engine): {names}'
        )
    lines += [f"- {n}" for n in notes if n not in stale]
    return ["#### Observations", "", *lines, ""] if lines else []


def section(data: dict[str, Any]) -> str:
    summary = summarize(data)  # from the raw runs (a stored summary may be of an older report)
    parts = ["## Command line: what users run", "", *_header(data), ""]
    for name, st in summary["stacks"].items():
        parts += _stack_table(name, st)
    if summary["stacks"]:
        parts += _fixed_cost_table(summary)
        parts += _first_call_table(data, summary)
        parts += _timeline_table(summary)
    parts += _at_rest_md(data.get("at_rest"))
    parts += _concurrency_md([summary.get("concurrency"), summary.get("concurrency_outside")])
    parts += _scale_md(summary.get("scale", []))
    parts += _observations(data)
    return "\n".join(parts).rstrip()


def block(data: dict[str, Any]) -> str:
    return f"{CLI_BEGIN}\n{section(data)}\n{CLI_END}"


def insert(page: str, data: dict[str, Any]) -> str:
    """docs/benchmark.md with the CLI section replaced, or inserted after the title (the first line)."""
    if CLI_BEGIN in page and CLI_END in page:
        head, rest = page.split(CLI_BEGIN, 1)
        return head + block(data) + rest.split(CLI_END, 1)[1]
    title, _, rest = page.partition("\n")
    return f"{title}\n\n{block(data)}\n{rest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", type=Path, default=HERE / "results" / "cli-latest.json")
    parser.add_argument("--docs", action="store_true", help="put the section into docs/benchmark.md")
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    print(section(data))
    if args.docs:
        page = HERE.parent / "docs" / "benchmark.md"
        page.write_text(insert(page.read_text() if page.exists() else "# Benchmark\n", data))
        print(f"\nwrote {page}")


if __name__ == "__main__":
    main()
