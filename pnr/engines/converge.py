"""Convergence: what a chunk's container should look like, and whether an existing one is reused,
recreated (with field-level reasons) or refused (it is not pnr's)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from pnr.engines.engine import (
    LABEL_CHUNK,
    LABEL_CONFIG,
    LABEL_DOMAIN,
    LABEL_HASH,
    LABEL_MANAGED,
    LABEL_SPEC,
)
from pnr.engines.protocol import ContainerState
from pnr.model import DEFAULT_HOST_IP, ContainerSpec


def desired_state(
    spec: ContainerSpec, image_id: str, env: dict[str, str], port_ip: str = DEFAULT_HOST_IP
) -> dict[str, object]:
    """The comparable description of a container (`port_ip`: its engine's address for ports written without
    one). Env values are digested: secrets never reach labels."""
    return {
        "image": image_id,
        "command": spec.command_args(),
        "ports": {key: f"{b.host_ip}:{b.host_port}" for key, b in spec.port_bindings(port_ip).items()},
        "env": {key: "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16] for key, value in sorted(env.items())},
        "volumes": list(spec.volumes),
        "labels": dict(sorted(spec.labels.items())),
        # newer keys only when set: containers made by an older pnr are not recreated for a key they never had
        **{key: value for key, value in _process_settings(spec).items() if value not in (None, False, {})},
    }


def _process_settings(spec: ContainerSpec) -> dict[str, object]:
    return {
        "entrypoint": spec.entrypoint_args(),
        "working_dir": spec.working_dir,
        "user": spec.user,
        "init": spec.init,
        "stop_signal": spec.stop_signal,
        "stop_grace_period_seconds": spec.stop_grace_period_seconds,
    }


def spec_label(desired: Mapping[str, object]) -> str:
    return json.dumps(desired, sort_keys=True, separators=(",", ":"))


def config_hash(desired: Mapping[str, object]) -> str:
    return hashlib.sha256(spec_label(desired).encode()).hexdigest()[:16]


def describe_changes(old: Mapping[str, object] | None, new: Mapping[str, object]) -> list[str]:
    """Field-level reasons, e.g. "ports.8080 changed 127.0.0.1:18080 -> 127.0.0.1:18081", "env.DB_URL changed"."""
    if old is None:
        return ["created by an older pnr (no recorded spec)"]
    reasons: list[str] = []
    for key in new:
        before, after = old.get(key), new[key]
        if before == after:
            continue
        if isinstance(after, dict) and isinstance(before, dict):
            for sub in sorted(set(before) | set(after)):
                b, a = before.get(sub), after.get(sub)
                if b == a:
                    continue
                secret = key == "env"
                if b is None:
                    reasons.append(f"{key}.{sub} added" + ("" if secret else f" ({a})"))
                elif a is None:
                    reasons.append(f"{key}.{sub} removed")
                else:
                    reasons.append(f"{key}.{sub} changed" + ("" if secret else f" {b} -> {a}"))
        elif key == "image":
            reasons.append(f"image changed {str(before)[7:19]} -> {str(after)[7:19]}")
        else:
            reasons.append(f"{key} changed {before} -> {after}")
    return reasons


@dataclass
class Decision:
    action: str  # create | reuse | recreate | refuse
    reasons: list[str] = field(default_factory=list)

    def render(self) -> str:
        return self.action + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def not_ours(labels: dict[str, str], cid: str, *, domain: str, chunk: str, container: str) -> str | None:
    """Why the container named `container` is not this chunk's to reuse or replace, or None when it is."""
    if labels.get(LABEL_MANAGED) != "true":
        return (
            f"container name {container} is taken by a container pnr did not create ({cid[:12]}); "
            "pnr will not touch it: remove it yourself or rename the container in the config"
        )
    if labels.get(LABEL_DOMAIN) != domain or labels.get(LABEL_CHUNK) != chunk:
        return (
            f"container name {container} belongs to chunk {labels.get(LABEL_CHUNK)!r} of domain "
            f"{labels.get(LABEL_DOMAIN)!r}; rename one of them"
        )
    return None


def other_configs(labels: list[dict[str, str]], domain: str, config_file: str) -> dict[str, int]:
    """The config files other than `config_file` that created containers of `domain` (by label), with how many
    each. Containers made before pnr remembered its config file (no label) belong to any file of the domain."""
    others: dict[str, int] = {}
    for lab in labels:
        made_by = lab.get(LABEL_CONFIG)
        if lab.get(LABEL_MANAGED) == "true" and lab.get(LABEL_DOMAIN) == domain and made_by and made_by != config_file:
            others[made_by] = others.get(made_by, 0) + 1
    return others


def decide(
    existing: ContainerState | None,
    desired: Mapping[str, object],
    *,
    domain: str,
    chunk: str,
    container: str,
    force: bool = False,
) -> Decision:
    if existing is None:
        return Decision("create")
    labels = existing.labels
    refusal = not_ours(labels, existing.id, domain=domain, chunk=chunk, container=container)
    if refusal:
        return Decision("refuse", [refusal])
    if force:
        return Decision("recreate", ["--force-recreate"])
    if labels.get(LABEL_HASH) == config_hash(desired):
        if existing.running:
            return Decision("reuse")
        return Decision("recreate", [f"container is {existing.status}"])
    try:
        old: Mapping[str, object] | None = json.loads(labels.get(LABEL_SPEC, "null"))
    except ValueError:
        old = None
    return Decision("recreate", describe_changes(old, desired) or ["configuration changed"])
