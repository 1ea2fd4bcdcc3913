"""Rendering helpers of the CLI that are not tables: compose-like log prefixes, and the timeline picture as PNG.

LogPrinter      `db   | line`: chunk names aligned, a stable colour per chunk (its position in the plan) when
                the output is a terminal, the engine's timestamp after the bar if asked for
svg_to_png()    renders an SVG with headless Chromium (`--screenshot`), the one PNG path without a new
                dependency; `find_chromium()` says whether it can
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

# compose's order: cyan, yellow, green, magenta, blue, then the bright ones
COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
RESET = "\x1b[0m"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class LogPrinter:
    """Formats log lines of the chunks `names` (in plan order: the order decides the colours)."""

    def __init__(self, names: Sequence[str], *, colour: bool) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.colour = colour
        self._codes = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}

    def prefix(self, chunk: str) -> str:
        text = f"{chunk:<{self.width}} | "
        if not self.colour:
            return text
        return f"\x1b[{self._codes.get(chunk, COLOURS[0])}m{text}{RESET}"

    def format(self, chunk: str, text: str, stamp: str = "") -> str:
        return f"{self.prefix(chunk)}{stamp + ' ' if stamp else ''}{text}\n"


def find_chromium() -> str | None:
    """A headless-capable Chromium on PATH, if any."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _size(svg: str) -> tuple[int, int]:
    found = re.search(r'<svg[^>]*\swidth="(\d+)"[^>]*\sheight="(\d+)"', svg)
    return (int(found.group(1)), int(found.group(2))) if found else (1000, 600)


def svg_to_png(svg: str, target: Path, chromium: str, timeout: float = 90.0) -> None:
    """Render `svg` to the PNG `target` at its own size with headless Chromium. RuntimeError if it fails."""
    width, height = _size(svg)
    with tempfile.TemporaryDirectory(prefix="pnr-png-") as tmp:
        page = Path(tmp) / "timeline.html"
        page.write_text(
            '<!doctype html><html><head><meta charset="utf-8"><style>html,body{margin:0;padding:0;'
            f"background:#fff}}svg{{display:block}}</style></head><body>{svg}</body></html>",
            encoding="utf-8",
        )
        shot = Path(tmp) / "shot.png"
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp}/profile",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{Path(chromium).name} did not render the picture: {exc}") from None
        if not shot.is_file() or shot.stat().st_size == 0:
            tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
            raise RuntimeError(f"{Path(chromium).name} wrote no screenshot (exit {proc.returncode}): {tail}")
        shutil.copyfile(shot, target)
