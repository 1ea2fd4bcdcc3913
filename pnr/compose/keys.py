"""What `pnr import` does with every key of a compose service (the compose-spec schema's `services` keys).

The same table drives the notes the importer emits for unsupported keys and the table in docs/compose.md
(a unit test checks that both cover every key of the bundled schema)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Handling = Literal["supported", "translated", "unsupported"]


@dataclass(frozen=True)
class KeyRule:
    handling: Handling  # supported: same meaning in pnr; translated: converted; unsupported: reported as a note
    pnr: str  # what pnr does with it (for unsupported keys: the note's text)


def _u(text: str) -> KeyRule:
    return KeyRule("unsupported", text)


_LIMITS = "not applied: pnr sets no resource limits on containers"
_HOOK = "not run: pnr has no container lifecycle hooks"

SERVICE_KEYS: dict[str, KeyRule] = {
    "annotations": _u("not set: pnr sets no OCI annotations"),
    "attach": _u("ignored: pnr never attaches to container output (read it with `docker logs`)"),
    "blkio_config": _u(_LIMITS),
    "build": KeyRule(
        "translated",
        "`context` → `container.build_path` (relative to the domain file), `dockerfile` → "
        "`container.dockerfile`, `target` → `container.build_target`, `args` → `container.build_args` (resolved "
        "when importing, as compose does). Refused: a remote (git URL) context and `dockerfile_inline`; other build "
        "keys are reported. Without `image` pnr tags the image `pnr-<domain>-<chunk>:latest`",
    ),
    "cap_add": _u("not applied: pnr keeps Docker's default capabilities"),
    "cap_drop": _u("not applied: pnr keeps Docker's default capabilities"),
    "cgroup": _u("not applied: Docker's default cgroup namespace"),
    "cgroup_parent": _u("not applied: Docker's default cgroup parent"),
    "command": KeyRule(
        "supported",
        "`container.command` (a string is split like a shell would, never run by one, as compose does); an empty "
        "one is reported: pnr keeps the image's",
    ),
    "configs": KeyRule(
        "translated",
        "a config with `file:` becomes a read-only bind mount at its target (default "
        "`/<name>`); other config sources are reported",
    ),
    "container_name": KeyRule(
        "supported",
        "`container.name` (the engine's rule: 2+ letters, digits, `_`, `.`, `-`); without it `<project>-<service>-1` "
        "as compose names it, however long",
    ),
    "cpu_count": _u(_LIMITS),
    "cpu_percent": _u(_LIMITS),
    "cpu_period": _u(_LIMITS),
    "cpu_quota": _u(_LIMITS),
    "cpu_rt_period": _u(_LIMITS),
    "cpu_rt_runtime": _u(_LIMITS),
    "cpu_shares": _u(_LIMITS),
    "cpus": _u(_LIMITS),
    "cpuset": _u(_LIMITS),
    "credential_spec": _u("not applied: Windows containers only"),
    "depends_on": KeyRule(
        "translated",
        "gatekeeper signals: `service_started` → `<dep>_started`, `service_healthy` → "
        "`<dep>_healthy`, `service_completed_successfully` → `<dep>_completed` (the "
        "dependency becomes a job chunk); see the section on ordering",
    ),
    "deploy": _u("not applied (orchestrator settings): one container per chunk, without limits or restart policy"),
    "develop": _u("ignored: pnr has no file watching (`docker compose watch`)"),
    "device_cgroup_rules": _u("not applied: pnr passes no devices"),
    "devices": _u("not applied: pnr passes no devices"),
    "dns": _u("not applied: Docker's default DNS (the domain network resolves chunk and container names)"),
    "dns_opt": _u("not applied: Docker's default DNS options"),
    "dns_search": _u("not applied: Docker's default DNS search domains"),
    "domainname": _u("not applied: Docker's default domain name"),
    "entrypoint": KeyRule(
        "supported",
        "`container.entrypoint` (string or list); an empty one (compose's reset) is reported: pnr keeps the image's",
    ),
    "env_file": KeyRule(
        "translated",
        "read when importing; its variables are copied into `container.env` "
        "(`environment` wins), `${VAR}` in them kept for pnr to expand at start",
    ),
    "environment": KeyRule(
        "supported",
        "`container.env`; `${VAR}` and `${VAR:-default}` kept verbatim, expanded by `pnr up` from its env over the "
        "domain's `env_files` (the project's `.env`); a valueless `VAR` becomes `${VAR}`",
    ),
    "expose": _u("not needed: chunks reach every port of each other on the domain network; nothing is published"),
    "extends": KeyRule(
        "translated",
        "a service of the same file is merged in when importing (compose's merge rules, as for `-f` files); "
        "`extends.file` is refused",
    ),
    "external_links": _u("not applied: pnr connects containers to the domain network only"),
    "extra_hosts": _u("not applied: no /etc/hosts entries are added"),
    "gpus": _u("not applied: pnr requests no GPUs"),
    "group_add": _u("not applied: the container runs with the image's groups"),
    "healthcheck": KeyRule(
        "translated",
        "an `exec` probe (`CMD` → its arguments, `CMD-SHELL` → `sh -c`), or a "
        "`docker` probe when `test` is absent; interval/timeout/retries/start_period "
        "→ interval_seconds/timeout_seconds/failure_threshold/start_period_seconds",
    ),
    "hostname": _u("not applied: Docker's default hostname; others reach it by chunk name or container name"),
    "image": KeyRule("supported", "`container.image`"),
    "init": KeyRule("supported", "`container.init`"),
    "ipc": _u("not applied: Docker's default IPC namespace (`service:` still orders the start)"),
    "isolation": _u("not applied: Windows containers only"),
    "label_file": KeyRule(
        "translated", "read when importing; its labels are copied into `container.labels` (`labels` wins)"
    ),
    "labels": KeyRule("supported", "`container.labels` (keys starting with `io.pnr.` are pnr's and are dropped)"),
    "links": KeyRule(
        "translated",
        "a `service_started` dependency, as in compose; the link alias is not created "
        "(reach the service by its chunk name)",
    ),
    "logging": _u("not applied: Docker's default log driver"),
    "mac_address": _u("not applied: Docker assigns the MAC address"),
    "mem_limit": _u(_LIMITS),
    "mem_reservation": _u(_LIMITS),
    "mem_swappiness": _u(_LIMITS),
    "memswap_limit": _u(_LIMITS),
    "models": _u("not applied: pnr provides no AI models to containers"),
    "network_mode": _u(
        "not applied: every chunk joins the domain network `pnr_<domain>` (`service:` still orders the start)"
    ),
    "networks": _u(
        "not applied: every chunk joins one network, `pnr_<domain>`, where its chunk name and container "
        "name are DNS aliases"
    ),
    "oom_kill_disable": _u(_LIMITS),
    "oom_score_adj": _u(_LIMITS),
    "pid": _u("not applied: Docker's default PID namespace (`service:` still orders the start)"),
    "pids_limit": _u(_LIMITS),
    "platform": _u("not applied: images are pulled and built for the engine's platform"),
    "ports": KeyRule(
        "translated",
        "`container.ports`; the host address is kept, and without one pnr publishes on "
        "127.0.0.1 (compose: all interfaces); random host ports and sctp are reported",
    ),
    "post_start": _u(_HOOK),
    "pre_start": _u(_HOOK + "; write the hook as a job chunk the service waits on"),
    "pre_stop": _u(_HOOK),
    "privileged": _u("not applied: containers never run privileged"),
    "profiles": KeyRule(
        "translated",
        "a service with profiles is imported only when one of them is enabled "
        "(`--profile`, `*` for all, else `COMPOSE_PROFILES` from the shell or `.env`); others are reported and "
        "left out",
    ),
    "provider": _u("refused: a provider service has no container for pnr to run"),
    "pull_policy": _u(
        "pnr uses a local image, else builds it (build_path), else pulls it (compose's `missing`); "
        "other policies are reported"
    ),
    "pull_refresh_after": _u("not applied: pnr pulls only missing images"),
    "read_only": _u("not applied: the root filesystem is writable"),
    "restart": _u(
        "not applied: pnr sets no restart policy; `pnr up --watch` reports a container that stops and "
        "applies on_dependency_lost"
    ),
    "runtime": _u("not applied: the engine's default runtime"),
    "scale": _u("not applied: pnr runs one container per chunk"),
    "secrets": KeyRule(
        "translated",
        "a secret with `file:` becomes a read-only bind mount at "
        "`/run/secrets/<name>` (or its target); other secret sources are reported",
    ),
    "security_opt": _u("not applied: Docker's default security options"),
    "shm_size": _u("not applied: Docker's default /dev/shm size"),
    "stdin_open": _u("not applied: containers run without stdin"),
    "stop_grace_period": KeyRule("supported", "`container.stop_grace_period_seconds`"),
    "stop_signal": KeyRule("supported", "`container.stop_signal`"),
    "storage_opt": _u("not applied: the storage driver's defaults"),
    "sysctls": _u("not applied: Docker's default kernel parameters"),
    "tmpfs": _u("not applied: no tmpfs mounts"),
    "tty": _u("not applied: containers run without a TTY"),
    "ulimits": _u(_LIMITS),
    "use_api_socket": _u("not applied: the engine socket is never mounted into containers"),
    "user": KeyRule("supported", "`container.user`"),
    "userns_mode": _u("not applied: Docker's default user namespace"),
    "uts": _u("not applied: Docker's default UTS namespace (`service:` still orders the start)"),
    "volumes": KeyRule(
        "translated",
        "`container.volumes`: bind paths made relative to the domain file, named "
        "volumes named as compose names them (`<project>_<volume>`), `ro`/`rw` kept; `volume.subpath` is refused "
        "(Docker API 1.45; pnr uses 1.41); other mount options and mount types are reported",
    ),
    "volumes_from": _u("not applied: mount the volumes explicitly (the service still starts after the other one)"),
    "working_dir": KeyRule("supported", "`container.working_dir`"),
}

# Values that mean what pnr does anyway: no note for them.
DEFAULT_VALUES: dict[str, tuple[object, ...]] = {
    "restart": ("no",),
    "scale": (1,),
    "pull_policy": ("missing", "if_not_present"),
}
