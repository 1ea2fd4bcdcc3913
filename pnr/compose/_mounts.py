"""Per-key value rules for mounts: `volumes`, file-based `secrets` and `configs`, and host paths written
relative to the domain file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pnr.compose._report import Context
from pnr.compose._spec import ComposeSpec, FileGrant, FileObjectSpec, MountSpec, VolumeSpec
from pnr.compose._values import as_bool, is_true
from pnr.compose._yaml import key_path
from pnr.model.container import is_host_path, windows_drive


@dataclass
class _Mount:
    """A mount in the long syntax, and the options of the short syntax that pnr does not apply."""

    spec: MountSpec
    options: list[str] = field(default_factory=list)


def volume_names(ctx: Context, data: ComposeSpec) -> dict[str, str]:
    """Top-level volume key → the engine's volume name, as compose names it."""
    out: dict[str, str] = {}
    for key, given in (data.get("volumes") or {}).items():
        spec: VolumeSpec = given or {}
        external = spec.get("external")
        ext_name = external.get("name") if isinstance(external, dict) else None
        is_external = bool(external) and (not isinstance(external, str) or is_true(external))
        out[key] = spec.get("name") or ext_name or (key if is_external else f"{ctx.project}_{key}")
    return out


def container_volumes(
    ctx: Context, name: str, base: str, items: list[str | MountSpec], volume_names: dict[str, str]
) -> list[str]:
    """`volumes` as `container.volumes` (SOURCE:TARGET[:ro]); options pnr does not apply are reported."""
    out: list[str] = []
    for i, item in enumerate(items):
        path = key_path(key_path(base, "volumes"), i)
        parsed = _short_volume(ctx, path, item) if isinstance(item, str) else _Mount(item)
        if parsed is None:
            continue
        spec = parsed.spec
        mount = _volume(ctx, name, i, path, spec, volume_names)
        if mount is None:
            continue
        volume_options = spec.get("volume")
        if isinstance(volume_options, dict) and volume_options.get("subpath"):
            ctx.fail(
                key_path(key_path(path, "volume"), "subpath"),
                "a volume subpath needs Docker API 1.45 (Engine 26) and pnr mounts with API 1.41: mount the "
                "whole volume, or a host folder as a bind mount",
            )
            continue
        for key in ("consistency", "bind", "volume", "tmpfs", "image"):
            value = spec.get(key)
            if value in (None, {}) or (key == "bind" and value in ({"create_host_path": True},)):
                continue
            ctx.note(key_path(path, key), f"{key} options are not applied by pnr")
        out.append(mount)
        for option in parsed.options:
            ctx.note(path, f"mount option {option!r} is not applied by pnr (only ro/rw)")
    return out


def _volume(
    ctx: Context, name: str, index: int, path: str, spec: MountSpec, volume_names: dict[str, str]
) -> str | None:
    """One mount as pnr's SOURCE:TARGET[:ro], or None (reported) when pnr cannot mount it."""
    kind = spec.get("type")
    target = str(spec.get("target") or "")
    source = str(spec.get("source") or "")
    if kind not in ("bind", "volume"):
        ctx.note(path, f"a {kind} mount is not supported by pnr: not mounted")
        return None
    if not target.startswith("/"):
        ctx.fail(path, f"the target {target!r} must be an absolute path in the container")
        return None
    if kind == "bind":
        if not source:
            ctx.fail(path, "a bind mount needs a source path")
            return None
        host = host_path(ctx, source)
    elif not source:
        host = f"{ctx.project}_{name}_{index}"
        ctx.note(
            path,
            f"anonymous volume: pnr needs a name, so it is the named volume {host!r} (kept between runs, "
            "unlike compose's anonymous volumes)",
        )
    elif source not in volume_names:
        ctx.fail(path, f"volume {source!r} is not declared in the top-level volumes")
        return None
    else:
        host = volume_names[source]
    read_only = as_bool(ctx, spec.get("read_only", False), key_path(path, "read_only"))
    return f"{host}:{target}:ro" if read_only else f"{host}:{target}"


def _short_volume(ctx: Context, path: str, text: str) -> _Mount | None:
    drive = windows_drive(text)  # C:\src:/src : the drive's colon is not a separator
    parts = text[len(drive) :].split(":")
    parts[0] = drive + parts[0]
    if len(parts) == 1:
        return _Mount({"type": "volume", "target": parts[0]})
    if len(parts) > 3 or not all(parts):
        ctx.fail(path, f"volume {text!r} must look like [SOURCE:]TARGET[:MODE]")
        return None
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    kind = "bind" if is_host_path(source) else "volume"
    spec: MountSpec = {"type": kind, "source": source, "target": target, "read_only": "ro" in options}
    return _Mount(spec, [o for o in options if o not in ("ro", "rw")])


def file_mounts(
    ctx: Context, path: str, kind: str, items: list[str | FileGrant], declared: dict[str, FileObjectSpec]
) -> list[str]:
    """File-based secrets/configs as read-only bind mounts, where compose mounts them."""
    out: list[str] = []
    singular = kind[:-1]
    for i, item in enumerate(items):
        where = key_path(path, i)
        source = item if isinstance(item, str) else str(item.get("source"))
        target = None if isinstance(item, str) else item.get("target")
        if isinstance(item, dict):
            for key in ("uid", "gid", "mode"):
                if key in item:
                    ctx.note(key_path(where, key), "not applied: the file keeps its owner and mode on the host")
        spec = declared.get(source)
        if spec is None:
            ctx.fail(where, f"{singular} {source!r} is not declared in the top-level {kind}")
            continue
        if not spec.get("file"):
            origin = ", ".join(k for k in ("environment", "content", "external", "name") if k in spec) or "elsewhere"
            ctx.note(
                where,
                f"{singular} {source!r} comes from {origin}: pnr mounts only file-based {kind}, so it is not mounted",
            )
            continue
        default = f"/run/secrets/{source}" if kind == "secrets" else f"/{source}"
        mount = str(target) if target else default
        if not mount.startswith("/"):
            mount = f"/run/secrets/{mount}" if kind == "secrets" else f"/{mount}"
        out.append(f"{host_path(ctx, str(spec['file']))}:{mount}:ro")
        ctx.note(where, f"mounted read-only from the file at {mount} (a bind mount)")
    return out


def host_path(ctx: Context, source: str) -> str:
    """A host path of the compose file (relative to the project folder), written relative to the domain file's
    folder (where pnr reads it from); absolute and `~` paths as they are."""
    if source.startswith(("/", "~", "\\")) or windows_drive(source):
        return source
    absolute = os.path.normpath(ctx.folder / source)
    try:
        rel = os.path.relpath(absolute, ctx.out_dir)
    except ValueError:  # another drive (Windows): no relative path exists
        return absolute
    return rel if rel.startswith(".") else f"./{rel}"
