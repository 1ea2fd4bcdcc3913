"""Per-key value rules for `ports`: short and long syntax, ranges and IPv6 addresses, as pnr's `container.ports`."""

from __future__ import annotations

import re

from pnr.compose._report import Context
from pnr.compose._spec import PortSpec
from pnr.compose._yaml import key_path

# a port item: container ports, host ports (None: a random one), host address, protocol
_PortSpec = tuple[list[int] | None, list[int] | None, str | None, str]


def container_ports(ctx: Context, path: str, items: list[int | float | str | PortSpec]) -> dict[str, str]:
    """`ports` as `container.ports` (container port → [address:]host port); what pnr cannot publish is reported."""
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        where = key_path(path, i)
        entries = _port_entries(ctx, where, item)
        default_ip = False
        for cport, proto, ip, hport in entries:
            if proto not in ("tcp", "udp"):
                ctx.note(
                    where,
                    f"protocol {proto} is not supported by pnr: container port {cport} is not published",
                )
                continue
            if hport is None:
                ctx.note(
                    where,
                    f"container port {cport}: compose publishes it on a random host port; pnr needs "
                    "a fixed one, so it is not published (other chunks reach it on the domain network)",
                )
                continue
            key = str(cport) if proto == "tcp" else f"{cport}/udp"
            if key in out:
                ctx.note(
                    where,
                    f"container port {key} is already published on {out[key]}; pnr publishes a "
                    f"container port once, so host port {hport} is not",
                )
                continue
            if ip is None:
                default_ip = True
                out[key] = str(hport)
            else:
                out[key] = f"[{ip}]:{hport}" if ":" in ip else f"{ip}:{hport}"
        if default_ip:
            ctx.note(
                where,
                "published on 127.0.0.1 (pnr's default); compose publishes on every interface: "
                "write 0.0.0.0:HOST:CONTAINER to keep that",
            )
    return out


def _port_entries(
    ctx: Context, path: str, item: int | float | str | PortSpec
) -> list[tuple[int, str, str | None, int | None]]:
    """(container port, protocol, host address, host port) for every port an item publishes."""
    parsed = _long_port(ctx, path, item) if isinstance(item, dict) else _short_port(ctx, path, str(item))
    if parsed is None:
        return []
    target, host, ip, proto = parsed
    if target is None:
        return []
    if host is None:
        return [(port, proto, ip, None) for port in target]
    if len(host) == len(target):
        return [(c, proto, ip, h) for c, h in zip(target, host, strict=True)]
    if len(target) == 1:
        ctx.note(
            path,
            f"host port range {host[0]}-{host[-1]}: compose picks a free port in it; pnr uses {host[0]}",
        )
        return [(target[0], proto, ip, host[0])]
    ctx.fail(path, f"port {item!r}: the host range and the container range differ in length")
    return []


def _long_port(ctx: Context, path: str, item: PortSpec) -> _PortSpec | None:
    for key in ("mode", "name", "app_protocol"):
        if key in item:
            ctx.note(key_path(path, key), "not applied by pnr")
    target = _port_range(ctx, path, str(item.get("target", "")))
    published = item.get("published")
    host = _port_range(ctx, path, str(published)) if published not in (None, "") else None
    return target, host, item.get("host_ip") or None, str(item.get("protocol") or "tcp").lower()


def _short_port(ctx: Context, path: str, text: str) -> _PortSpec | None:
    """[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], ports or ranges, IPv6 addresses in brackets."""
    text, _, proto = text.strip().partition("/")
    ip = None
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            ctx.fail(path, f"port {text!r}: an IPv6 address in brackets must be followed by ':'")
            return None
        ip, parts = text[1:end], text[end + 2 :].split(":")
    else:
        parts = text.split(":")
        if len(parts) >= 3:  # IP:HOST:CONTAINER (an IPv6 address without brackets has more colons)
            ip, parts = ":".join(parts[:-2]), parts[-2:]
    if len(parts) > 2:
        ctx.fail(path, f"port {text!r} must look like [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
        return None
    host = _port_range(ctx, path, parts[0]) if len(parts) == 2 and parts[0] else None
    return _port_range(ctx, path, parts[-1]), host, ip or None, (proto or "tcp").lower()


def _port_range(ctx: Context, path: str, text: str) -> list[int] | None:
    m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", text)
    if not m:
        ctx.fail(path, f"{text!r} is not a port or a port range")
        return None
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= lo <= hi <= 65535:
        ctx.fail(path, f"{text!r} is outside 1-65535 (or its range is reversed)")
        return None
    return list(range(lo, hi + 1))
