"""The engines of one domain: one `Engine` per engine name its chunks use, built from the config's `engines`,
plus the environment's (`default`) for chunks without `engine`. Passed down like a single engine was: a run,
`pnr status` and `pnr down` each hold one set; nothing here is process-wide."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors
import docker.tls

from pnr.engines.engine import Engine
from pnr.engines.resolve import UnknownContext, resolve_context
from pnr.exceptions import ConfigError, ConfigIssue, EngineError, EngineUnreachable
from pnr.model import DEFAULT_ENGINE, ChunkReference, DesignChunk, EngineSpec, Plan, find_port_key

PING_TIMEOUT = 10.0  # seconds an engine may take to answer a ping before it counts as unreachable


def engine_from_spec(name: str, spec: EngineSpec, base_dir: Path) -> Engine:
    """The `Engine` of one `engines` entry (TLS file paths relative to `base_dir`, the config's folder). A
    `context` is read from the docker CLI's context store now (UnknownContext if it holds no such context)."""
    if spec.context is not None:
        endpoint = resolve_context(spec.context, named_by=f"engines.{name}.context")
        return Engine(name=name, endpoint=endpoint, address=spec.reach_address(), port_ip=spec.port_ip())
    assert spec.host is not None  # the model holds exactly one of host and context
    tls = None
    if spec.tls is not None:
        files = {k: str((base_dir / Path(v).expanduser()).resolve()) for k, v in spec.tls.files().items()}
        try:
            tls = docker.tls.TLSConfig(
                client_cert=(files["cert"], files["key"]) if "cert" in files else None,
                ca_cert=files.get("ca"),
                verify=spec.tls.verify,
            )
        except docker.errors.TLSParameterError as exc:
            raise EngineError(f"engine {name}: tls: {exc}") from None
    return Engine(host=spec.host, name=name, address=spec.reach_address(), port_ip=spec.port_ip(), tls=tls)


class EngineSet:
    """Engines by name. `of(chunk)` is the engine a chunk runs on; `unreachable()` pings them in parallel."""

    def __init__(self, engines: Mapping[str, Any], plan: Plan | None = None, *, fallback: bool = False) -> None:
        if not engines:
            raise ValueError("an EngineSet needs at least one engine")
        self._engines = dict(engines)
        self.plan = plan
        self._fallback = fallback  # `single`: every chunk runs on the one engine, whatever it names

    @classmethod
    def single(cls, engine: Any, plan: Plan | None = None) -> EngineSet:
        """One engine for every chunk (a caller that passes one engine, and unit tests with a fake)."""
        return cls({getattr(engine, "name", DEFAULT_ENGINE): engine}, plan, fallback=True)

    @classmethod
    def coerce(cls, engine: Any, plan: Plan, cpuxs: Iterable[str] | None = None) -> EngineSet:
        """What a caller passed as "the engine", as a set: a set as is; the environment's `Engine` (name
        `default`) becomes the engines of `plan` with it as the default; anything else (a fake) runs every chunk."""
        if isinstance(engine, EngineSet):
            return engine
        if isinstance(engine, Engine) and engine.name == DEFAULT_ENGINE:
            return cls.for_plan(plan, cpuxs, default=engine)
        return cls.single(engine, plan)

    @classmethod
    def for_plan(
        cls,
        plan: Plan,
        cpuxs: Iterable[str] | None = None,
        *,
        default: Any = None,
        factory: Callable[[str, EngineSpec, Path], Any] = engine_from_spec,
    ) -> EngineSet:
        """The engines the chunks of `cpuxs` (default: all) run on. `default` is the environment's engine
        (built from the environment if not given); `factory` builds a named one (unit tests inject fakes)."""
        names = used_engines(plan, cpuxs)
        engines: dict[str, Any] = {}
        for name in names:
            if name == DEFAULT_ENGINE:
                engines[name] = default if default is not None else Engine()
            else:
                try:
                    engines[name] = factory(name, plan.domain.engines[name], plan.base_dir)
                except UnknownContext as exc:  # the config names it: a config error, before anything starts
                    raise ConfigError(plan.source, [ConfigIssue(f"engines.{name}.context", str(exc))]) from None
        return cls(engines, plan)

    # -- lookup ----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._engines)

    def __getitem__(self, name: str) -> Any:
        return self._engines[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._engines.items())

    @property
    def default(self) -> Any:
        """The environment's engine if the set has it, else its first engine."""
        return self._engines.get(DEFAULT_ENGINE) or next(iter(self._engines.values()))

    def name_of(self, chunk: DesignChunk) -> str:
        if self._fallback:
            return next(iter(self._engines))
        return chunk.engine or DEFAULT_ENGINE

    def of(self, chunk: DesignChunk) -> Any:
        """The engine `chunk` runs on."""
        name = self.name_of(chunk)
        try:
            return self._engines[name]
        except KeyError:
            raise EngineError(f"chunk {chunk.name}: engine {name!r} is not one of this run's engines") from None

    def describe(self, name: str) -> str:
        engine = self._engines[name]
        describe = getattr(engine, "describe", None)
        return str(describe()) if callable(describe) else f"engine {name}"

    # -- reachability ----------------------------------------------------------------------------
    def unreachable(self, names: Iterable[str] | None = None, timeout: float = PING_TIMEOUT) -> dict[str, str]:
        """Ping the engines (all, or `names`) in parallel: {name: why} for each that did not answer within
        `timeout`. A ping that hangs is left behind in a daemon thread."""
        wanted = list(self._engines) if names is None else [n for n in names if n in self._engines]
        answers: dict[str, str | None] = {}
        lock = threading.Lock()

        def ping(name: str) -> None:
            problem: str | None = None
            try:
                self._engines[name].ping()
            except EngineError as exc:
                problem = str(exc)
            except Exception:  # not an answer about reachability (a fake without ping): it answered
                pass
            with lock:
                answers[name] = problem

        threads = [threading.Thread(target=ping, args=(n,), daemon=True, name=f"pnr-ping-{n}") for n in wanted]
        for thread in threads:
            thread.start()
        end = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        with lock:
            out = {n: answers[n] for n in wanted if n in answers and answers[n] is not None}
            for n in wanted:
                if n not in answers:
                    out[n] = f"{self.describe(n)} did not answer within {timeout:g}s"
        return {n: str(why) for n, why in out.items()}

    def ping_all(self, names: Iterable[str] | None = None, timeout: float = PING_TIMEOUT) -> None:
        """Every engine (or `names`) answers, else one EngineUnreachable naming each that does not."""
        self.raise_unreachable(self.unreachable(names, timeout))

    def raise_unreachable(self, lost: Mapping[str, str]) -> None:
        """One EngineUnreachable naming each engine of `lost` ({name: why}, from `unreachable`), if any."""
        if not lost:
            return
        if len(lost) == 1:
            name, why = next(iter(lost.items()))
            raise EngineUnreachable(why, name)
        lines = "\n".join(f"  {self.describe(n)}: {why}" for n, why in lost.items())
        raise EngineUnreachable(f"{len(lost)} Docker engines do not answer:\n{lines}", next(iter(lost)))

    # -- ${chunk:...} ----------------------------------------------------------------------------
    def address_of(self, name: str) -> str:
        """Where engine `name`'s published ports are reached (no connection needed)."""
        if name in self._engines and hasattr(self._engines[name], "address"):
            return str(self._engines[name].address)
        spec = self.plan.domain.engines.get(name) if self.plan is not None else None
        if spec is not None:
            return spec.reach_address()
        return Engine().address  # the environment's engine, when this set does not hold it

    def resolve(self, ref: ChunkReference) -> str:
        """`${chunk:db.host}`: the address of db's engine; `${chunk:db.port:KEY}`: the host port db publishes
        for its `container.ports` key KEY. KeyError/ValueError (with the reason) if it cannot be resolved."""
        if self.plan is None:
            raise ValueError(f"{ref}: chunk references need the domain's plan")
        domain = self.plan.domain
        target = self.plan.chunks.get(ref.chunk)
        if target is None:
            raise KeyError(f"{ref}: no chunk named {ref.chunk!r} in this domain")
        if ref.what == "host":
            return self.address_of(domain.engine_of(target))
        bindings = domain.port_bindings(target)
        key = find_port_key(bindings, ref.port_key or "")
        if key is None:
            raise KeyError(f"{ref}: {ref.port_key!r} is not a key of chunk {ref.chunk}'s ports")
        return str(bindings[key].host_port)


def used_engines(plan: Plan, cpuxs: Iterable[str] | None = None) -> list[str]:
    """Names of the engines the chunks of `cpuxs` (default: all) run on, in first-use order."""
    wanted = list(plan.domain.cpuxs) if cpuxs is None else list(cpuxs)
    names: dict[str, None] = {}
    for cpux in wanted:
        for chunk in plan.domain.cpuxs[cpux].design_chunks:
            names.setdefault(plan.domain.engine_of(chunk), None)
    return list(names)
