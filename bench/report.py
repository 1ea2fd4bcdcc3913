"""Derived metrics, the markdown report (bench/results/inprocess.md) and its plot (bench/results/inprocess.png).

.venv/bin/python bench/report.py [bench/results/latest.json]     # re-render without re-measuring
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from stacks import Stack

RUNNER_LABEL = {"lower_bound": "lower bound", "pnr": "pnr", "compose": "docker-compose 1.29.2"}
PROBE_STACKS = ["chain10", "fanout1x30", "diamond", "demo"]
SCALE_STACKS = ["scale100", "scale500"]


def latencies(stack: Stack, res: dict[str, Any]) -> dict[str, Any]:
    """Per dependent service: its container's StartedAt minus its last dependency's ready time (as the
    orchestrator saw it), and minus its last dependency's StartedAt."""
    r2s, s2s = [], []
    for s in stack.services:
        if not s.deps:
            continue
        r2s.append(res["started"][s.name] - max(res["ready_at"][d] for d in s.deps))
        s2s.append(res["started"][s.name] - max(res["started"][d] for d in s.deps))
    return {
        "ready_to_start_median": statistics.median(r2s) if r2s else 0.0,
        "ready_to_start_max": max(r2s) if r2s else 0.0,
        "start_to_start_median": statistics.median(s2s) if s2s else 0.0,
    }


def machine() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return "?"

    import prefect

    with open("/proc/cpuinfo") as fh:
        cpuinfo = fh.read().splitlines()
    with open("/proc/meminfo") as fh:
        meminfo = fh.read().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) // 1024 for line in meminfo if line.startswith("MemTotal")), 0)
    return {
        "cpu": cpu,
        "cores": len([1 for line in cpuinfo if line.startswith("processor")]),
        "mem_mb": mem,
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "docker": run("docker", "version", "--format", "{{.Server.Version}}"),
        "compose": run("docker-compose", "version", "--short"),
    }


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def summarize(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in data["runs"]:
        if run["repeat"] < 0 or "error" in run:
            continue
        table.setdefault(run["stack"], {}).setdefault(run["runner"], {"runs": []})["runs"].append(run)
    for by_runner in table.values():
        for entry in by_runner.values():
            runs = entry["runs"]
            entry["n"] = len(runs)
            entry["chunks"] = runs[0]["chunks"]
            entry["wall"] = _stats([r["wall"] for r in runs])
            entry["cpu"] = _stats([r["cpu"] for r in runs])
            entry["r2s"] = statistics.median(r["ready_to_start_median"] for r in runs)
            entry["r2s_max"] = max(r["ready_to_start_max"] for r in runs)
            entry["s2s"] = statistics.median(r["start_to_start_median"] for r in runs)
            for key in ("pnr_peak_rss_mb", "server_peak_rss_mb"):
                if key in runs[0]:
                    entry[key] = max(r[key] for r in runs)
    return table


def _fmt(stat: tuple[float, float, float]) -> str:
    med, lo, hi = stat
    return f"{med:.2f} s ({lo:.2f}–{hi:.2f})"


def tables(data: dict[str, Any]) -> str:
    t = summarize(data)
    lines = [
        "### Wall time to all ready (median, min–max over repeats)",
        "",
        "| stack | chunks | lower bound | pnr | docker-compose | pnr / lower bound | pnr / compose | pnr CPU"
        " | ready→dependent start (median; max) lb / pnr / compose | start→start gap lb / pnr / compose |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for stack in PROBE_STACKS + SCALE_STACKS:
        if stack not in t:
            continue
        e = t[stack]
        lb, pn, co = e.get("lower_bound"), e.get("pnr"), e.get("compose")
        anyone = lb or pn or co
        assert anyone is not None

        def ms(x: dict[str, Any] | None, key: str) -> str:
            return f"{x[key] * 1000:.0f}" if x else "–"

        ratio_lb = f"{pn['wall'][0] / lb['wall'][0]:.2f}×" if pn and lb else "–"
        ratio_co = f"{pn['wall'][0] / co['wall'][0]:.2f}×" if pn and co else "–"
        cpu_s = f"{pn['cpu'][0]:.2f} s" if pn else "–"
        r2s = " / ".join(f"{ms(x, 'r2s')}; {ms(x, 'r2s_max')}" if x else "–" for x in (lb, pn, co))
        lines.append(
            f"| {stack} | {anyone['chunks']} | {_fmt(lb['wall']) if lb else '–'} | {_fmt(pn['wall']) if pn else '–'} | "
            f"{_fmt(co['wall']) if co else '–'} | {ratio_lb} | {ratio_co} | {cpu_s} | "
            f"{r2s} ms | {' / '.join(ms(x, 's2s') for x in (lb, pn, co))} ms |"
        )
    lines += [
        "",
        "Repeats per cell: "
        + ", ".join(f"{s} {max(v['n'] for v in t[s].values())}" for s in PROBE_STACKS + SCALE_STACKS if s in t)
        + ".",
    ]
    lines += [
        "",
        "### Scale: orchestration overhead and memory",
        "",
        "| chunks | lower bound | pnr | compose | pnr overhead per chunk ((pnr − lb) / chunks) | pnr CPU per chunk"
        " | pnr process peak RSS | Prefect server peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stack in SCALE_STACKS:
        if stack not in t or "pnr" not in t[stack]:
            continue
        e = t[stack]
        pn, lb, co = e["pnr"], e.get("lower_bound"), e.get("compose")
        n = pn["chunks"]
        over = f"{(pn['wall'][0] - lb['wall'][0]) / n * 1000:.1f} ms" if lb else "–"
        lines.append(
            f"| {n} | {_fmt(lb['wall']) if lb else '–'} | {_fmt(pn['wall'])} | {_fmt(co['wall']) if co else '–'} | "
            f"{over} | {pn['cpu'][0] / n * 1000:.1f} ms | {pn['pnr_peak_rss_mb']:.0f} MB | "
            f"{pn['server_peak_rss_mb']:.0f} MB |"
        )
    extra = []
    if data.get("pnr_warmup_s") is not None:
        extra.append(f"- First pnr run in a fresh process (diamond, excluded above): {data['pnr_warmup_s']:.2f} s.")
    if data.get("server_idle_rss_mb"):
        extra.append(
            "- Prefect server (`prefect server start`, one for all runs) RSS after the warm-up: "
            f"{data['server_idle_rss_mb']:.0f} MB."
        )
    cli = data.get("cli")
    if cli:
        lb = t.get("chain10", {}).get("lower_bound")
        pn = t.get("chain10", {}).get("pnr")
        extra.append(
            f"- CLI end to end, once: `pnr up` on chain10 in a new process with its own temporary Prefect server: "
            f"{cli['wall']:.2f} s wall"
            + (
                f" (in-process pnr median {pn['wall'][0]:.2f} s, lower bound {lb['wall'][0]:.2f} s)"
                if pn and lb
                else ""
            )
            + f", {cli['cpu']:.1f} s CPU, peak RSS {cli['peak_rss_mb']:.0f} MB."
        )
    if extra:
        lines += ["", *extra]
    return "\n".join(lines)


METHOD = """\
## Method

One command, `bench/run.sh` (or `.venv/bin/python bench/run.py`), measures everything in one run on one
machine; raw numbers (every run) go to `bench/results/*.json`, and this page and the plot are rendered from them
(`bench/report.py` re-renders). For each stack and repeat the three runners go in rotating order, and every
container/network of a run is removed before the next (all carry the label `pnr.bench.run=<tag>`).

- **Stacks.** `chain10`: s0 → s1 → … → s9, each a busybox container running
  `sh -c 'sleep 0.5; exec httpd -f -p 8080 -h /www'` (ready 0.5 s after start). `fanout1x30`: one root, 30
  dependents. `diamond`: top → (left, right) → bottom. `demo`: the real demo stack (redis → api → nginx web,
  `config/dev_stack.json`'s images). `scale100` / `scale500`: 10 layers of 10 / 50 `sleep 3600` containers, each
  waiting on one container of the layer above, no probe (ready = running), to isolate orchestration costs.
  Every probed service publishes its port on 127.0.0.1.
- **pnr**: `pnr.flows.bring_up` called in one long-lived Python process (`bench/pnr_worker.py`, quiet settings
  as `pnr up`, heartbeat off as in `pnr up`) against one `prefect server start` reused for all runs. Probes: http
  GET (or tcp for redis) on the published port every 50 ms. The first run of the process is a warm-up, not
  counted. CPU = `time.process_time()` of the pnr process over the run (all threads). Memory = VmHWM of the pnr
  process; the server's RSS (process tree) is sampled every 0.1 s.
- **docker-compose 1.29.2** (Debian), file format 2.4, `depends_on: {condition: service_healthy}` (no probe:
  `service_started`), healthcheck `interval` = the engine's minimum, **1 ms**, `start_period` 0, run inside the
  container: busybox `wget -q -O /dev/null http://127.0.0.1:8080/`, `redis-cli ping`, and a python3 urllib GET for
  the api (/health) and web (/ containing "greeting"). Wall = from `docker-compose up -d` until the last
  container's `health_status: healthy` event (compose's `up -d` returns before the last service is healthy).
  CPU = the docker-compose process.
- **Lower bound** (`bench/lower_bound.py`): docker-py, one thread per service; a thread waits on its
  dependencies' ready events, then creates and starts its container and polls the same probe from the host every
  5 ms. Its wall time is the critical path: container create + start + time-to-ready, chained.
- **Wall to all ready** is measured from the call (including network creation) to the moment the last service
  was seen ready by that orchestrator. **ready → dependent start** = the dependent container's `State.StartedAt`
  minus the moment its (last) dependency was seen ready by the orchestrator; it includes the engine's
  create + start of the dependent (the lower bound's column shows that floor). **start → start** = a dependent's
  StartedAt minus its dependency's StartedAt (comparable across runners: ≥ 0.5 s + time-to-listen for the
  busybox stacks).
"""


def render(data: dict[str, Any], root: Path) -> None:
    discussion = root / "bench" / "discussion.md"
    m = data["machine"]
    parts = ["# In-process benchmark: pnr's orchestration inside one long-lived Python process", ""]
    parts += [
        f"Measured {data['date']} on {m['cores']} cores ({m['cpu']}), {m['mem_mb'] // 1024} GB RAM; Docker engine "
        f"{m['docker']}, docker-compose {m['compose']}, Prefect {m['prefect']}, Python {m['python']}. "
        f"Raw results: `bench/results/` (run tag {data['tag']}).",
        "",
        "![wall time to all ready](inprocess.png)",
        "",
        "Targets: ≤ 1.10× the lower bound; ≤ 0.6× docker compose; "
        "≤ 20 ms orchestration overhead per chunk at 500 chunks.",
        "",
        "## Results",
        "",
        tables(data),
        "",
    ]
    if discussion.exists():
        parts += [discussion.read_text().rstrip(), ""]
    parts += [METHOD]
    out = root / "bench" / "results"
    (out / "inprocess.md").write_text("\n".join(parts))
    plot(data, out / "inprocess.png")


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = summarize(data)
    colors = {"lower_bound": "#7f7f7f", "pnr": "#1f77b4", "compose": "#d62728"}
    groups = [[s for s in PROBE_STACKS if s in t], [s for s in SCALE_STACKS if s in t]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), squeeze=False)
    for ax, stacks in zip(axes[0], groups, strict=True):
        width = 0.27
        for i, runner in enumerate(("lower_bound", "pnr", "compose")):
            xs, meds, lo, hi = [], [], [], []
            for j, s in enumerate(stacks):
                e = t[s].get(runner)
                if not e:
                    continue
                med, mn, mx = e["wall"]
                xs.append(j + (i - 1) * width)
                meds.append(med)
                lo.append(med - mn)
                hi.append(mx - med)
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=RUNNER_LABEL[runner], color=colors[runner])
            for x, v in zip(xs, meds, strict=True):
                ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(stacks)))
        ax.set_xticklabels(stacks)
        ax.set_ylabel("seconds to all ready (median; bars: min–max)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize=8)
    axes[0][0].set_title("readiness-ordered stacks")
    if len(groups) > 1:
        axes[0][1].set_title("scale: sleeping containers, 10 layers")
    fig.suptitle(
        f"pnr vs docker-compose vs lower bound ({data['machine']['cores']} cores, Docker {data['machine']['docker']})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "results" / "latest.json"
    render(json.loads(src.read_text()), here.parent)
    print("wrote bench/results/inprocess.md and bench/results/inprocess.png")
