"""The engines of one domain: one `Engine` per engine name its chunks use, built from the config's `engines`,
plus the environment's (`default`) for chunks without `engine`. Passed down like a single engine was: a run,
`pnr status` and `pnr down` each hold one set; nothing here is process-wide."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pnr.engines.resolve import UnknownContext
from pnr.exceptions import ConfigError, ConfigIssue, EngineError, EngineUnreachable
from pnr.model import DEFAULT_ENGINE, DEFAULT_HOST_IP, ChunkReference, DesignChunk, EngineSpec, Plan, find_port_key

if TYPE_CHECKING:
    from pnr.engines.protocol import ContainerEngine

PING_TIMEOUT = 10.0  # seconds an engine may take to answer a ping before it counts as unreachable


class EngineSource(Protocol):
    """One engine or a domain's engines: whatever a run, `pnr status` or `pnr down` is given to act on."""

    def engine_set(self, plan: Plan) -> EngineSet:
        """The engines `plan`'s chunks run on."""
        ...


class EngineSet:
    """Engines by name. `of(chunk)` is the engine a chunk runs on; `unreachable()` pings them in parallel."""

    def __init__(
        self,
        engines: Mapping[str, ContainerEngine],
        plan: Plan | None = None,
        *,
        fallback: bool = False,
        environment: ContainerEngine | None = None,
    ) -> None:
        if not engines:
            raise ValueError("an EngineSet needs at least one engine")
        self._engines = dict(engines)
        self.plan = plan
        self._fallback = fallback  # `single`: every chunk runs on the one engine, whatever it names
        self._environment = environment  # the environment's engine, whether or not a chunk here runs on it

    @classmethod
    def single(cls, engine: ContainerEngine, plan: Plan | None = None) -> EngineSet:
        """One engine for every chunk (a caller that passes one engine, and unit tests with a fake)."""
        return cls({engine.name: engine}, plan, fallback=True)

    def engine_set(self, plan: Plan) -> EngineSet:
        """A set is its own set of engines (`EngineSource`)."""
        return self

    @classmethod
    def for_plan(
        cls,
        plan: Plan,
        cpuxs: Iterable[str] | None = None,
        *,
        default: ContainerEngine,
        factory: Callable[[str, EngineSpec, Path], ContainerEngine],
    ) -> EngineSet:
        """The engines the chunks of `cpuxs` (default: all) run on. `default` is the environment's engine;
        `factory` builds a named one (`engine_from_spec`; unit tests inject fakes)."""
        names = used_engines(plan, cpuxs)
        engines: dict[str, ContainerEngine] = {}
        for name in names:
            if name == DEFAULT_ENGINE:
                engines[name] = default
            else:
                try:
                    engines[name] = factory(name, plan.domain.engines[name], plan.base_dir)
                except UnknownContext as exc:  # the config names it: a config error, before anything starts
                    raise ConfigError(plan.source, [ConfigIssue(f"engines.{name}.context", str(exc))]) from None
        return cls(engines, plan, environment=default)

    # -- lookup ----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._engines)

    def __getitem__(self, name: str) -> ContainerEngine:
        return self._engines[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def items(self) -> list[tuple[str, ContainerEngine]]:
        return list(self._engines.items())

    @property
    def default(self) -> ContainerEngine:
        """The environment's engine if the set has it, else its first engine."""
        return self._engines.get(DEFAULT_ENGINE) or next(iter(self._engines.values()))

    def name_of(self, chunk: DesignChunk) -> str:
        if self._fallback:
            return next(iter(self._engines))
        return chunk.engine or DEFAULT_ENGINE

    def of(self, chunk: DesignChunk) -> ContainerEngine:
        """The engine `chunk` runs on."""
        name = self.name_of(chunk)
        try:
            return self._engines[name]
        except KeyError:
            raise EngineError(f"chunk {chunk.name}: engine {name!r} is not one of this run's engines") from None

    def describe(self, name: str) -> str:
        return self._engines[name].describe()

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
        if name in self._engines:
            return self._engines[name].address
        spec = self.plan.domain.engines.get(name) if self.plan is not None else None
        if spec is not None:
            return str(spec.reach_address())
        if self._environment is not None:  # the environment's engine, when no chunk here runs on it
            return self._environment.address
        return DEFAULT_HOST_IP

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
