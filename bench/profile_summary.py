"""Summarize a py-spy raw (collapsed stacks) profile of the pnr process: where its CPU samples go.

.venv/bin/python bench/profile_summary.py bench/results/profile-scale500.txt
"""

from __future__ import annotations

import collections
import re
import sys

FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:)]+)(?::\d+)?\)$")


def main(path: str, top: int = 25) -> None:
    self_pnr: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as fh:
        lines = fh.readlines()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        seen = set()
        pnr_frames = []
        for fr in frames:
            m = FRAME.match(fr.strip())
            if not m:
                continue
            key = f"{m['file'].split('site-packages/')[-1]}:{m['func']}"
            if "/pnr/" in m["file"] or m["file"].startswith("pnr/"):
                pnr_frames.append(key.split("/work/main/")[-1])
            if key not in seen:
                incl[key] += n
                seen.add(key)
        if pnr_frames:
            self_pnr[pnr_frames[-1]] += n  # innermost pnr frame: pnr code (and what it calls)
    print(f"{total} samples (100 Hz, non-idle)")
    print("\ninclusive, top functions:")
    for key, n in incl.most_common(top):
        print(f"  {n / total * 100:5.1f}%  {key}")
    print("\ninnermost pnr frame (pnr code + what it calls):")
    for key, n in self_pnr.most_common(15):
        print(f"  {n / total * 100:5.1f}%  {key}")


if __name__ == "__main__":
    main(sys.argv[1])
