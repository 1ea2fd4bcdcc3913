"""A long-lived pnr process for the benchmark: reads one JSON command per line on stdin, runs
`pnr.flows.bring_up` in-process (same quiet settings as `pnr up`), answers one JSON line on stdout.
Reusing the process and the Prefect server across runs measures pnr, not Python start-up."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

from pnr.settings import quiet_prefect_env

# the same quiet defaults `pnr up` sets
for key, value in quiet_prefect_env().items():
    os.environ.setdefault(key, value)

from pnr.prefect.flows import bring_up, quiet_prefect_run  # noqa: E402


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by libraries must not corrupt the protocol
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        t0 = time.time()
        c0 = time.process_time()
        try:
            with quiet_prefect_run():
                result = bring_up(cmd["config"], runtime_dir=cmd["runtime"], timeout_seconds=cmd.get("timeout", 900))
            answer = {"ok": True, "result": result}
        except BaseException as exc:  # reported to the orchestrator, which fails the run
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
        answer.update(
            t0=t0,
            wall=time.time() - t0,
            cpu=time.process_time() - c0,
            rss_kb=_rss_kb("VmRSS"),
            hwm_kb=_rss_kb("VmHWM"),
            maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        )
        out.write(json.dumps(answer, default=str) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
