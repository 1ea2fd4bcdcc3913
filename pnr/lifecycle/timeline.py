"""The readiness timeline of a run as a picture: a Gantt chart in SVG, written by hand (no plotting library).

    one row per chunk      bars: waiting (created → started), starting (started → first probe),
                           probing (first probe → ready), ready (ready → the end of the run)
    the critical path      the chain of chunks that decided when the last one was ready: rows highlighted,
                           bars outlined, and a dashed link from each producer's ready to the next one's start
    the time axis          seconds from the run's start (the earliest `created_at`)

Pure functions of `TimelineChunk`s (made from ChunkProgress objects or their JSON by `timeline_chunks`) and the
plan's `depends_on`; the CLI writes the SVG of a run's `RunTimeline` (`pnr up --timeline`), the Prefect artifacts
embed it. Rows and bars carry classes and `data-*` attributes, so tests and scripts can read the picture back.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape

from pnr.lifecycle.state import ChunkProgress
from pnr.records import RunTimeline, TimelineChunk

STAGES = ("waiting", "starting", "probing", "ready")
COLOURS = {
    "waiting": "#e9c46a",
    "starting": "#8ecae6",
    "probing": "#219ebc",
    "ready": "#2a9d8f",
    "failed": "#e63946",
}
CRITICAL = "#f4a261"  # the highlight of critical-path rows and links
FAILED_PHASES = ("failed", "blocked", "lost")

WIDTH = 960
LABEL_W = 190  # the chunk names
RIGHT_W = 90  # "ready 3.21 s"
TOP = 56  # title and axis labels
ROW_H = 26
BAR_H = 16
BOTTOM = 92  # axis caption, legend, critical path
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"


ChunkTimes = Mapping[str, object] | ChunkProgress  # a chunk's progress, or its JSON (state file, run result)


def timeline_chunks(data: Mapping[str, ChunkTimes]) -> list[TimelineChunk]:
    """Chunks from name → ChunkProgress, or its JSON (the chunk-state file, a run's result)."""
    out = []
    for name, value in data.items():
        row = value.to_json() if isinstance(value, ChunkProgress) else value
        out.append(
            TimelineChunk(
                name=str(name),
                phase=str(row.get("phase") or ""),
                created_at=_num(row.get("created_at")),
                started_at=_num(row.get("started_at")),
                first_probe_at=_num(row.get("first_probe_at")),
                ready_at=_num(row.get("ready_at")),
                cpux=str(row.get("cpux") or ""),
            )
        )
    return out


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def critical_path(depends_on: Mapping[str, Sequence[str]], ready: Mapping[str, float]) -> list[str]:
    """The chain of chunks that decided when the last chunk was ready: start at the last-ready chunk and follow,
    at each step, the producer whose readiness came last (the one that actually opened the gate)."""
    if not ready:
        return []
    path = [max(ready, key=lambda n: ready[n])]
    while True:
        producers = [d for d in depends_on.get(path[-1], []) if d in ready and d not in path]
        if not producers:
            break
        path.append(max(producers, key=lambda n: ready[n]))
    return list(reversed(path))


def _nice_step(span: float, most: int = 10) -> float:
    """A tick step (1, 2, 2.5 or 5 times a power of ten) giving at most `most` ticks over `span` seconds."""
    raw = max(span, 1e-3) / most
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw:
            return float(factor * power)
    return float(10 * power)


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".") if seconds else "0"


def _segments(c: TimelineChunk, end: float) -> list[tuple[str, float, float]]:
    """(stage, from, to) of one chunk; the stage it stopped in runs to `end`."""
    marks = [("waiting", c.created_at), ("starting", c.started_at), ("probing", c.first_probe_at)]
    marks += [("ready", c.ready_at)]
    present = [(stage, t) for stage, t in marks if t is not None]
    out = []
    for i, (stage, t) in enumerate(present):
        until = present[i + 1][1] if i + 1 < len(present) else end
        out.append((stage, t, max(t, until)))
    return out


def run_timeline_svg(timeline: RunTimeline) -> str:
    """The picture of a run's timeline, titled after its domain."""
    title = f"readiness timeline of {timeline.domain}"
    return timeline_svg(timeline.chunks, timeline.depends_on, title=title, end=timeline.end)


def timeline_svg(
    data: Mapping[str, ChunkTimes] | Sequence[TimelineChunk],
    depends_on: Mapping[str, Sequence[str]],
    *,
    title: str = "readiness timeline",
    end: float | None = None,
) -> str:
    """The Gantt chart of a run as an SVG document (see the module docstring). `data`: name → ChunkProgress
    (or its JSON), or TimelineChunks; `end`: the end of the time axis (default: the last moment known)."""
    chunks = list(data) if isinstance(data, Sequence) else timeline_chunks(data)
    chunks = [c for c in chunks if c.created_at is not None]
    chunks.sort(key=lambda c: (c.started_at is None, c.started_at or 0.0, c.created_at or 0.0, c.name))
    height = TOP + ROW_H * max(1, len(chunks)) + BOTTOM
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="12" class="pnr-timeline">'
    )
    parts = [head, f"<title>{escape(title)}</title>", f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>']
    parts.append(f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(title)}</text>')
    if not chunks:
        parts.append(f'<text x="12" y="{TOP + 16}">no chunk ran</text></svg>')
        return "\n".join(parts) + "\n"
    t0 = min(c.created_at for c in chunks if c.created_at is not None)
    known = [t for c in chunks for t in (c.created_at, c.started_at, c.first_probe_at, c.ready_at) if t is not None]
    t_end = max([*known, end or 0.0])
    span = max(t_end - t0, 0.1)
    plot_w = WIDTH - LABEL_W - RIGHT_W

    def x(t: float) -> float:
        return round(LABEL_W + (t - t0) / span * plot_w, 2)

    crit = critical_path(depends_on, {c.name: c.ready_at for c in chunks if c.ready_at is not None})
    parts += _axis(span, plot_w, height)
    row_of = {c.name: i for i, c in enumerate(chunks)}
    for i, c in enumerate(chunks):
        parts += _row(c, i, x, t0, t_end, c.name in crit)
    parts += _critical_links(crit, chunks, row_of, x)
    last_ready = max((c.ready_at for c in chunks if c.name in crit and c.ready_at is not None), default=t0)
    parts += _legend(height, last_ready - t0, crit)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _axis(span: float, plot_w: float, height: float) -> list[str]:
    step = _nice_step(span)
    bottom = height - BOTTOM
    parts = ['<g class="axis">']
    ticks = int(span / step + 1e-9)
    for k in range(ticks + 1):
        sec = k * step
        px = round(LABEL_W + sec / span * plot_w, 2)
        parts.append(f'<line x1="{px}" y1="{TOP - 6}" x2="{px}" y2="{bottom}" stroke="#dddddd" stroke-width="1"/>')
        parts.append(f'<text x="{px}" y="{TOP - 10}" text-anchor="middle" fill="#555555">{_fmt(sec)}</text>')
    parts.append(
        f'<text x="{LABEL_W + plot_w / 2}" y="{bottom + 18}" text-anchor="middle" fill="#555555">'
        "seconds from the start of the run</text>"
    )
    parts.append("</g>")
    return parts


def _row(c: TimelineChunk, i: int, x: Callable[[float], float], t0: float, t_end: float, critical: bool) -> list[str]:
    y = TOP + i * ROW_H
    bar_y = y + (ROW_H - BAR_H) / 2
    failed = c.phase in FAILED_PHASES
    classes = "row" + (" critical" if critical else "") + (" failed" if failed else "")
    parts = [
        f'<g class="{classes}" data-chunk="{escape(c.name)}" data-phase="{escape(c.phase)}" '
        f'data-critical="{str(critical).lower()}">'
    ]
    if critical:
        parts.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW_H}" fill="{CRITICAL}" fill-opacity="0.18"/>')
    label = ("★ " if critical else "") + c.name
    weight = ' font-weight="bold"' if critical else ""
    parts.append(f'<text x="10" y="{y + ROW_H / 2 + 4}"{weight}>{escape(label)}</text>')
    segments = _segments(c, t_end)
    for n, (stage, start, stop) in enumerate(segments):
        last = n == len(segments) - 1
        colour = COLOURS["failed"] if failed and last else COLOURS[stage]
        opacity = ' fill-opacity="0.45"' if stage == "ready" else ""
        outline = ' stroke="#222222" stroke-width="1.5"' if critical and stage != "ready" else ""
        width = max(round(x(stop) - x(start), 2), 1.0)
        what = f"{c.name}: {stage}" + (f" ({c.phase})" if failed and last else "")
        parts.append(
            f'<rect class="bar {stage}" data-stage="{stage}" data-from="{start - t0:.3f}" data-to="{stop - t0:.3f}" '
            f'x="{x(start)}" y="{bar_y}" width="{width}" height="{BAR_H}" rx="2" fill="{colour}"{opacity}{outline}>'
            f"<title>{escape(what)}: {_fmt(start - t0)} s → {_fmt(stop - t0)} s ({stop - start:.2f} s)</title></rect>"
        )
    right = WIDTH - RIGHT_W + 8
    note = f"ready {c.ready_at - t0:.2f} s" if c.ready_at is not None else c.phase or "not ready"
    fill = COLOURS["failed"] if failed else "#333333"
    parts.append(f'<text x="{right}" y="{y + ROW_H / 2 + 4}" fill="{fill}">{escape(note)}</text>')
    parts.append("</g>")
    return parts


def _critical_links(
    crit: list[str], chunks: list[TimelineChunk], row_of: dict[str, int], x: Callable[[float], float]
) -> list[str]:
    """A dashed link from each critical producer's ready to its dependent's start."""
    by_name = {c.name: c for c in chunks}
    parts = ['<g class="critical-path" data-path="' + escape(" ".join(crit)) + '">']
    for a, b in itertools.pairwise(crit):
        ca, cb = by_name[a], by_name[b]
        if ca.ready_at is None or cb.started_at is None:
            continue
        ya = TOP + row_of[a] * ROW_H + ROW_H / 2
        yb = TOP + row_of[b] * ROW_H + ROW_H / 2
        parts.append(
            f'<path class="link" d="M {x(ca.ready_at)} {ya} L {x(cb.started_at)} {yb}" fill="none" '
            f'stroke="#c0392b" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    parts.append("</g>")
    return parts


def _legend(height: float, total: float, crit: list[str]) -> list[str]:
    y = height - 50
    parts = ['<g class="legend">']
    px = 10.0
    for stage in STAGES:
        opacity = ' fill-opacity="0.45"' if stage == "ready" else ""
        parts.append(f'<rect x="{px}" y="{y}" width="14" height="12" rx="2" fill="{COLOURS[stage]}"{opacity}/>')
        parts.append(f'<text x="{px + 19}" y="{y + 10}">{stage}</text>')
        px += 95
    parts.append(f'<rect x="{px}" y="{y}" width="14" height="12" rx="2" fill="{COLOURS["failed"]}"/>')
    parts.append(f'<text x="{px + 19}" y="{y + 10}">failed / blocked</text>')
    px += 135
    parts.append(
        f'<rect x="{px}" y="{y - 2}" width="34" height="16" fill="{CRITICAL}" fill-opacity="0.35" '
        'stroke="#222222" stroke-width="1.5"/>'
    )
    parts.append(f'<text x="{px + 40}" y="{y + 10}">★ critical path</text>')
    text = (
        f"critical path: {' → '.join(crit)}, {total:.2f} s to the last ready chunk"
        if crit
        else "no critical path: no chunk became ready"
    )
    parts.append(f'<text x="10" y="{y + 32}" fill="#333333">{escape(text)}</text>')
    parts.append("</g>")
    return parts


def svg_data_uri(svg: str) -> str:
    """`data:image/svg+xml;base64,...`: an SVG as a URI for a markdown image (what the Prefect UI draws; it strips
    inline `<svg>` from markdown)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
