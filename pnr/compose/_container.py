"""Per-key value rules for a service's container: name, image and build, command, process, env, ports, mounts,
labels; every key pnr does not apply reported from the key table (pnr.compose.keys)."""

from __future__ import annotations

from collections.abc import Iterable

from pnr.compose._mounts import container_volumes, file_mounts, host_path
from pnr.compose._ports import container_ports
from pnr.compose._project import REMOTE_CONTEXT
from pnr.compose._report import Context
from pnr.compose._spec import BuildSpec, ComposeSpec, ContainerDoc, ListOrDict, Scalar, ServiceSpec
from pnr.compose._values import as_bool, as_seconds, container_env, container_labels
from pnr.compose._yaml import key_path
from pnr.compose.keys import DEFAULT_VALUES, SERVICE_KEYS
from pnr.model.container import MAX_STOP_GRACE_SECONDS
from pnr.model.fields import check_container_name

_REFUSED_BUILD_KEYS = {
    "dockerfile_inline": "pnr builds from a Dockerfile in the context folder: write the inline Dockerfile to a "
    "file there and name it with dockerfile:",
}


def container(
    ctx: Context, name: str, svc: ServiceSpec, data: ComposeSpec, volume_names: dict[str, str]
) -> ContainerDoc:
    """A service as pnr's `container` (every key reported that pnr treats differently)."""
    base = key_path("services", name)
    cname = svc.get("container_name") or f"{ctx.project}-{name}-1"  # compose's name, valid by construction
    try:
        check_container_name(cname)
    except ValueError as exc:
        ctx.fail(key_path(base, "container_name"), str(exc))
    out: ContainerDoc = {"name": cname, **_image(ctx, base, svc), **_commands(ctx, base, svc)}
    volumes = container_volumes(ctx, name, base, svc.get("volumes") or [], volume_names)
    volumes += file_mounts(
        ctx, key_path(base, "secrets"), "secrets", svc.get("secrets") or [], data.get("secrets") or {}
    )
    volumes += file_mounts(
        ctx, key_path(base, "configs"), "configs", svc.get("configs") or [], data.get("configs") or {}
    )
    env = container_env(ctx, base, svc)
    ports = container_ports(ctx, key_path(base, "ports"), svc.get("ports") or [])
    labels = container_labels(ctx, base, svc)
    if env:
        out["env"] = env
    if ports:
        out["ports"] = ports
    if volumes:
        out["volumes"] = volumes
    if labels:
        out["labels"] = labels
    out.update(_process(ctx, base, svc))
    return out


def _image(ctx: Context, base: str, svc: ServiceSpec) -> ContainerDoc:
    """`image` and `build`: one of them pnr can run, or one error saying why not."""
    out: ContainerDoc = {}
    if svc.get("image"):
        out["image"] = svc["image"]
    build = svc.get("build")
    if build is not None:
        out.update(_build(ctx, base, build, has_image=bool(svc.get("image"))))
    context = build if isinstance(build, str) else (build or {}).get("context", "")
    if REMOTE_CONTEXT.match(str(context or "")):
        return out  # reported once, by _build
    if not out.get("image") and not out.get("build_path") and "provider" not in svc:
        ctx.fail(base, "has neither image nor build: pnr has nothing to run")
    return out


def _commands(ctx: Context, base: str, svc: ServiceSpec) -> ContainerDoc:
    """`command` and `entrypoint`; an empty one (compose's reset) is reported."""
    out: ContainerDoc = {}
    command, entrypoint = svc.get("command"), svc.get("entrypoint")
    if command is not None and _kept(ctx, base, "command", command):
        out["command"] = command
    if entrypoint is not None and _kept(ctx, base, "entrypoint", entrypoint):
        out["entrypoint"] = entrypoint
    return out


def _kept(ctx: Context, base: str, key: str, value: str | list[str]) -> bool:
    """An empty command (compose's reset of the image's) is reported: pnr refuses an empty one (a model change
    would allow it)."""
    if not value:
        ctx.note(
            key_path(base, key),
            f"empty: pnr cannot clear the image's {'CMD' if key == 'command' else 'ENTRYPOINT'}, so the "
            "image's own is used",
        )
    return bool(value)


def _process(ctx: Context, base: str, svc: ServiceSpec) -> ContainerDoc:
    """How the container's process runs and stops."""
    out: ContainerDoc = {}
    if svc.get("working_dir"):
        out["working_dir"] = svc["working_dir"]
    if svc.get("user"):
        out["user"] = svc["user"]
    signal = str(svc.get("stop_signal") or "").strip().upper()
    if signal:
        out["stop_signal"] = signal if signal.startswith("SIG") or signal.isdigit() else f"SIG{signal}"
    if "init" in svc:
        out["init"] = as_bool(ctx, svc["init"], key_path(base, "init"))
    if "stop_grace_period" in svc:
        seconds = as_seconds(ctx, svc["stop_grace_period"], key_path(base, "stop_grace_period"))
        if seconds is not None and seconds > MAX_STOP_GRACE_SECONDS:
            ctx.note(key_path(base, "stop_grace_period"), f"longer than pnr's limit: {MAX_STOP_GRACE_SECONDS:g}s used")
            seconds = MAX_STOP_GRACE_SECONDS
        if seconds is not None:
            out["stop_grace_period_seconds"] = seconds
    return out


def _build_args(ctx: Context, path: str, args: ListOrDict) -> dict[str, str]:
    """Build arguments as compose passes them: resolved when loading (already interpolated, like every key
    pnr does not expand itself); an argument without a value comes from the environment, or is left out."""
    items: Iterable[tuple[str, Scalar]] = args.items() if isinstance(args, dict) else [_split_arg(a) for a in args]
    out: dict[str, str] = {}
    for key, value in items:
        if value is None:
            if key in ctx.env:
                out[key] = ctx.env[key]
                ctx.note(key_path(path, key), f"no value: {key} taken from the environment when importing")
            else:
                ctx.note(key_path(path, key), f"no value and {key} is unset: left out, as compose does")
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def _split_arg(arg: str) -> tuple[str, str | None]:
    """`KEY=VALUE` as (KEY, VALUE); `KEY` as (KEY, None)."""
    key, found, value = arg.partition("=")
    return key, value if found else None


def _build(ctx: Context, base: str, build: str | BuildSpec, has_image: bool) -> ContainerDoc:
    """`build` as `container.build_path`, `dockerfile` and `build_args`; what pnr cannot build is refused."""
    path = key_path(base, "build")
    spec: BuildSpec = {"context": build} if isinstance(build, str) else build
    out: ContainerDoc = {}
    context = str(spec.get("context") or ".")
    if REMOTE_CONTEXT.match(context):
        message = f"remote build context {context!r}: pnr builds only from a local folder"
        if has_image:
            ctx.note(path, f"{message}; the image is used (pulled if missing)")
        else:
            ctx.fail(path, f"{message}: clone it and give its folder as the context, or give an image")
        return out
    out["build_path"] = host_path(ctx, context)
    dockerfile = spec.get("dockerfile")
    if dockerfile and dockerfile != "Dockerfile":
        out["dockerfile"] = dockerfile
    if spec.get("target"):
        out["build_target"] = str(spec["target"])
    args = _build_args(ctx, key_path(path, "args"), spec.get("args") or {})
    if args:
        out["build_args"] = args
    for key in spec:
        if key in _REFUSED_BUILD_KEYS:
            ctx.fail(key_path(path, key), _REFUSED_BUILD_KEYS[key])
        elif key not in ("context", "dockerfile", "args", "target") and not key.startswith("x-"):
            ctx.note(key_path(path, key), "not applied by pnr's image build")
    if not has_image:
        ctx.note(
            path,
            "the built image is tagged pnr-<domain>-<chunk>:latest (compose: <project>-<service>); "
            "add image: to choose the tag",
        )
    return out


def report_unsupported(ctx: Context, name: str, svc: ServiceSpec) -> None:
    """A note for every key pnr does not apply (the key table), an error for `provider`."""
    base = key_path("services", name)
    for key, value in svc.items():
        rule = SERVICE_KEYS.get(key)
        if rule is None or rule.handling != "unsupported" or value in DEFAULT_VALUES.get(key, ()):
            continue
        path = key_path(base, key)
        if key == "provider":
            ctx.fail(path, rule.pnr)
        elif key == "deploy" and isinstance(value, dict) and value:
            for sub in value:
                if not str(sub).startswith("x-"):
                    ctx.note(key_path(path, sub), _DEPLOY.get(sub, "not applied: a swarm/orchestrator setting"))
        else:
            ctx.note(path, rule.pnr)


_DEPLOY = {
    "resources": "not applied: pnr sets no resource limits or reservations",
    "replicas": "not applied: pnr runs one container per chunk",
    "restart_policy": "not applied: pnr sets no restart policy (pnr up --watch reports a stopped container)",
    "placement": "not applied: pnr runs every container on one engine",
    "mode": "not applied: pnr runs one container per chunk",
    "labels": "not applied: service labels are a swarm concept; use labels",
    "update_config": "not applied: pnr has no rolling updates",
    "rollback_config": "not applied: pnr has no rolling updates",
    "endpoint_mode": "not applied: pnr has no service load balancing",
}
