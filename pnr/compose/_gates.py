"""The dependency graph as pnr's gates and probes: each dependency becomes a gatekeeper signal, each healthcheck
a probe, each service a design chunk:

    service_started                 → the dependency's `<svc>_started` (written once its container runs)
    service_healthy                 → `<svc>_healthy` (its healthcheck, as a probe, wrote Y)
    service_completed_successfully  → `<svc>_completed` (the dependency is a job chunk that exited 0)

A service nothing depends on gates on `system_ready`."""

from __future__ import annotations

from dataclasses import dataclass

from pnr.compose._container import container, report_unsupported
from pnr.compose._graph import COMPLETED, HEALTHY, STARTED, Dep
from pnr.compose._report import Context
from pnr.compose._spec import ChunkDoc, ComposeSpec, PnrDoc, ProbeDoc, ServiceSpec
from pnr.compose._values import as_bool, as_int, as_seconds
from pnr.compose._yaml import key_path
from pnr.model.fields import MAX_SECONDS

_SUFFIX = {STARTED: "started", HEALTHY: "healthy", COMPLETED: "completed"}
_PROMPT = {STARTED: "has {} started?", HEALTHY: "is {} healthy?", COMPLETED: "has {} completed successfully?"}
SYSTEM_READY = "system_ready"
# compose's defaults (docker run's): a healthcheck without timing
HC_INTERVAL, HC_TIMEOUT, HC_RETRIES = 30.0, 30.0, 3


@dataclass
class Role:
    """What a chunk promises its dependents."""

    kind: str  # "plain" (ready when running), "probe" (ready when its healthcheck passes), "job"
    check: ProbeDoc | None = None
    on_start: bool = False  # with started_signals: writes <svc>_started when its container runs

    def final(self, service: str) -> str:
        suffix = {"plain": "started", "probe": "healthy", "job": "completed"}[self.kind]
        return f"{service}_{suffix}"


def roles(
    ctx: Context, services: dict[str, ServiceSpec], active: dict[str, dict[str, Dep]], started_signals: bool
) -> dict[str, Role]:
    """What each chunk promises: a plain service (ready when running), a probed one, or a job."""
    waits: dict[str, dict[str, list[str]]] = {name: {} for name in active}
    for name, mine in active.items():
        for dep, spec in mine.items():
            waits[dep].setdefault(spec.condition, []).append(name)
    roles: dict[str, Role] = {}
    for name in active:
        svc = services[name]
        wanted = waits[name]
        hc_path = key_path(key_path("services", name), "healthcheck")
        check, disabled = _probe(ctx, name, svc)
        if COMPLETED in wanted:
            roles[name] = Role("job", on_start=started_signals and STARTED in wanted)
            if "healthcheck" in svc and not disabled:
                ctx.note(
                    hc_path,
                    f"not probed: {', '.join(wanted[COMPLETED])} wait(s) for {name!r} to complete "
                    "successfully, so it is a job chunk (done when it exits 0), and a job takes no "
                    "health check",
                )
        elif HEALTHY in wanted:
            if check is None:
                for dependent in wanted[HEALTHY] if disabled else ():  # else: its test was reported
                    ctx.fail(
                        active[dependent][name].path,
                        f"{dependent!r} waits for {name!r} to be healthy, but its healthcheck is off",
                    )
                continue
            roles[name] = Role("probe", check, on_start=started_signals and STARTED in wanted)
        elif check is not None and "healthcheck" in svc and (STARTED not in wanted or started_signals):
            roles[name] = Role("probe", check, on_start=STARTED in wanted)
        else:
            roles[name] = Role("plain")
            if check is not None and "healthcheck" in svc:
                ctx.note(
                    hc_path,
                    f"not probed: {', '.join(wanted[STARTED])} wait(s) for {name!r} with "
                    "service_started, and pnr writes a chunk's signals only once its probe passes, "
                    "so a probe would delay them; pnr treats it as ready once it runs",
                )
    return roles


def _probe(ctx: Context, name: str, svc: ServiceSpec) -> tuple[ProbeDoc | None, bool]:
    """The probe for a healthcheck (None, True when it is disabled). Without `healthcheck` at all: a
    `docker` probe of the image's own HEALTHCHECK, which compose's service_healthy waits on too."""
    path = key_path(key_path("services", name), "healthcheck")
    hc = svc.get("healthcheck")
    if hc is None:
        return _timing(
            {"type": "docker", "interval_seconds": 0.5},
            HC_INTERVAL,
            HC_TIMEOUT,
            HC_RETRIES,
            0.0,
            threshold=False,
        ), False
    if as_bool(ctx, hc.get("disable", False), key_path(path, "disable")):
        return None, True
    test = hc.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    check: ProbeDoc
    if not test:
        check = {"type": "docker", "interval_seconds": 0.5}
        ctx.note(
            path,
            "no test: pnr waits for the image's own HEALTHCHECK (a docker probe); this timing bounds "
            "pnr's wait, while the engine runs the image's check with the image's timing",
        )
    elif test[0] == "NONE":
        return None, True
    elif test[0] == "CMD" and len(test) > 1:
        check = {"type": "exec", "command": list(test[1:])}
    elif test[0] == "CMD-SHELL" and len(test) > 1:
        check = {"type": "exec", "command": ["sh", "-c", " ".join(test[1:])]}
    else:
        ctx.fail(
            key_path(path, "test"),
            "healthcheck.test must be a command string, or a list starting with "
            '"CMD" or "CMD-SHELL" and a command, or ["NONE"]',
        )
        return None, False
    interval = as_seconds(ctx, hc.get("interval"), key_path(path, "interval")) or HC_INTERVAL
    timeout = as_seconds(ctx, hc.get("timeout"), key_path(path, "timeout")) or HC_TIMEOUT
    start_period = as_seconds(ctx, hc.get("start_period"), key_path(path, "start_period")) or 0.0
    retries = as_int(ctx, hc.get("retries", HC_RETRIES), key_path(path, "retries")) or HC_RETRIES
    if "start_interval" in hc:
        ctx.note(
            key_path(path, "start_interval"),
            f"not applied: pnr probes at one interval ({interval:g}s), also during the start period",
        )
    if check["type"] == "exec":
        check["interval_seconds"] = min(interval, MAX_SECONDS)
    return _timing(check, interval, timeout, retries, start_period, threshold=check["type"] == "exec"), False


def chunk(
    ctx: Context,
    name: str,
    svc: ServiceSpec,
    deps: dict[str, Dep],
    roles: dict[str, Role],
    data: ComposeSpec,
    volume_names: dict[str, str],
) -> ChunkDoc:
    role = roles[name]
    gate: dict[str, PnrDoc] = {}
    for dep, spec in deps.items():
        if dep not in roles:  # a dependency pnr cannot gate on was reported
            continue
        signal = _gate_signal(ctx, name, dep, spec, roles[dep])
        gate[signal] = _pnr(_prompt_of(signal))
    if not gate:
        gate[SYSTEM_READY] = _pnr("is system ready?")
    final = role.final(name)
    chunk: ChunkDoc = {"name": name}
    if role.kind == "job":
        chunk["kind"] = "job"
    chunk["gatekeeper"] = gate
    chunk["flowout"] = {final: _pnr(_prompt_of(final))}
    if role.on_start:
        started = f"{name}_started"
        chunk["on_start"] = {started: _pnr(_prompt_of(started))}
    if role.kind == "probe" and role.check is not None:
        chunk["health_check"] = {
            **role.check,
            "status_mapping": {
                "success": {"key": final, "response": ["yes"], "tv": "Y"},
                "failure": {"key": final, "response": ["no"], "tv": "N"},
            },
        }
    chunk["container"] = container(ctx, name, svc, data, volume_names)
    report_unsupported(ctx, name, svc)
    for i, link in enumerate(svc.get("links") or []):
        target, _, alias = link.partition(":")
        if alias and alias != target:
            ctx.note(
                key_path(key_path(key_path("services", name), "links"), i),
                f"alias {alias!r} not created: reach {target!r} by its chunk name {target!r}",
            )
    return chunk


def _gate_signal(ctx: Context, name: str, dep: str, spec: Dep, role: Role) -> str:
    """The signal `name` waits on for `dep`: exactly compose's condition where pnr can express it, else
    the next stricter one (with a note)."""
    if spec.condition == COMPLETED or role.kind == "plain":
        return role.final(dep)
    if spec.condition == STARTED:
        if role.on_start:
            return f"{dep}_started"
        why = (
            "runs as a job (another service waits for it to complete successfully)"
            if role.kind == "job"
            else "has a readiness probe (another service waits for it with service_healthy)"
        )
        waits_for = "has completed successfully" if role.kind == "job" else "is healthy"
        ctx.note(
            spec.path,
            f"service_started: {dep!r} {why}, and pnr writes a chunk's signals only once it is "
            f"ready, so {name!r} starts when {dep!r} {waits_for} — later than compose would. "
            "Exact compose order needs pnr to write a signal when a container starts "
            "(on_start, see docs/compose.md)",
        )
        return role.final(dep)
    if role.kind == "job":  # service_healthy on a service that also runs as a job
        ctx.note(
            spec.path,
            f"service_healthy: {dep!r} runs as a job (another service waits for it to complete "
            f"successfully), so {name!r} starts once it has exited 0",
        )
    return role.final(dep)


def _timing(
    check: ProbeDoc,
    interval: float,
    timeout: float,
    retries: int,
    start_period: float,
    threshold: bool,
) -> ProbeDoc:
    """A probe's timing from a healthcheck's. The deadline covers the start period and every retry twice over:
    docker's own check would have declared the service unhealthy well before."""
    out = check.copy()
    out.setdefault("interval_seconds", interval)
    out["timeout_seconds"] = min(timeout, MAX_SECONDS)
    deadline = round(min(MAX_SECONDS, max(60.0, 2 * (start_period + retries * (interval + timeout)))), 3)
    out["deadline_seconds"] = deadline
    if start_period:
        out["start_period_seconds"] = min(start_period, deadline / 2)
    if threshold:
        out["failure_threshold"] = retries
    return out


def _pnr(prompt: str) -> PnrDoc:
    return {"prompt": prompt, "response": ["yes"], "tv": "Y"}


def _prompt_of(signal: str) -> str:
    if signal == SYSTEM_READY:
        return "is system ready?"
    service, _, suffix = signal.rpartition("_")
    condition = {v: k for k, v in _SUFFIX.items()}[suffix]
    return _PROMPT[condition].format(service)
