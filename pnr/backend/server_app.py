"""The ASGI app of pnr's resident Prefect server: Prefect's own app with four changes, each a no-op (and said
so on stderr) where Prefect's internals are not what it expects:

- SQLite transactions begin IMMEDIATE, so concurrent writers queue on the busy timeout instead of failing with
  SQLITE_BUSY_SNAPSHOT and a 503 the client backs off from (PrefectHQ/prefect#10188). PostgreSQL is untouched.
- Timestamps are bound as standard-library UTC datetimes (the same instants), not Pendulum values, whose
  arithmetic in asyncpg's encoder is slow.
- A plain multi-row INSERT runs as one cached statement executed per row (`executemany`) instead of a statement
  compiled anew for every batch. Anything else runs as Prefect wrote it.
- The docket worker that runs Prefect's periodic services polls every 5 s, without a cancellation listener
  (`quiet_docket`); the automations service sweeps its housekeeping every 30 s instead of 5 (`quiet_triggers`);
  uvicorn's main loop ticks once a second instead of ten times (`quiet_uvicorn`): what an idle server spends
  most of its CPU on (docs/server.md). Memory freed after the start-up and after bursts goes back to the system
  (`trim_memory_later`).

Run as `python -m uvicorn --factory pnr.backend.server_app:create_app` (pnr.backend.server builds that command).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prefect.server.database.configurations import AioSqliteConfiguration
    from prefect.server.utilities.database import Timestamp
    from sqlalchemy.engine import Dialect, Result
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction
    from sqlalchemy.sql import Executable, TableClause
    from sqlalchemy.sql.dml import Insert

    # the methods wrapped here, as the wrappers call them
    BeginTransaction = Callable[..., AbstractAsyncContextManager[AsyncSessionTransaction]]
    BindParam = Callable[[Timestamp, datetime.datetime | None, Dialect], datetime.datetime | None]
    Execute = Callable[..., Awaitable[Result[tuple[object, ...]]]]

T = TypeVar("T")


def create_app() -> FastAPI:
    immediate_sqlite_transactions()
    plain_timestamp_binds()
    executemany_inserts()
    quiet_docket()
    quiet_triggers()
    quiet_uvicorn()
    trim_memory_later()
    from prefect.server.api.server import create_app as prefect_app

    return prefect_app()


def immediate_sqlite_transactions() -> bool:
    """Make `AioSqliteConfiguration.begin_transaction` always BEGIN IMMEDIATE; False if it cannot."""
    try:
        from prefect.server.database.configurations import AioSqliteConfiguration
    except ImportError as exc:
        print(f"pnr: SQLite transactions stay DEFERRED: {exc}", file=sys.stderr)
        return False

    def immediate(original: BeginTransaction) -> BeginTransaction:
        @contextlib.asynccontextmanager
        async def begin_transaction(
            self: AioSqliteConfiguration, session: AsyncSession, with_for_update: bool = False
        ) -> AsyncIterator[AsyncSessionTransaction]:
            async with original(self, session, with_for_update=True) as transaction:  # IMMEDIATE
                yield transaction

        return begin_transaction

    _wrap_once(AioSqliteConfiguration, "begin_transaction", immediate)
    return True


def plain_timestamp_binds() -> bool:
    """Make Prefect's `Timestamp` column type bind a standard-library `datetime` (UTC) on databases other than
    SQLite; False if it cannot."""
    try:
        from prefect.server.utilities.database import Timestamp
    except ImportError as exc:
        print(f"pnr: timestamps stay bound as Prefect's datetimes: {exc}", file=sys.stderr)
        return False

    def plain(original: BindParam) -> BindParam:
        def process_bind_param(
            self: Timestamp, value: datetime.datetime | None, dialect: Dialect
        ) -> datetime.datetime | None:
            # SQLite's binding formats the value by its fields, no arithmetic: converting would only cost (~1 us)
            return original(self, value if dialect.name == "sqlite" else plain_datetime(value), dialect)

        return process_bind_param

    _wrap_once(Timestamp, "process_bind_param", plain)
    return True


def executemany_inserts() -> bool:
    """Make `AsyncSession.execute` run a plain multi-row INSERT as an executemany (`as_executemany`); False if
    it cannot."""
    try:
        from sqlalchemy.ext.asyncio import AsyncSession
    except ImportError as exc:
        print(f"pnr: multi-row inserts stay as Prefect writes them: {exc}", file=sys.stderr)
        return False

    def many(original: Execute) -> Execute:
        async def execute(
            self: AsyncSession, statement: Executable, params: object = None, **kw: object
        ) -> Result[tuple[object, ...]]:
            if params is None:
                try:
                    split = as_executemany(statement)
                except Exception:  # SQLAlchemy's internals moved: Prefect's statement, as it is
                    split = None
                if split is not None:
                    statement, params = split
            return await original(self, statement, params, **kw)

        return execute

    _wrap_once(AsyncSession, "execute", many)
    return True


DOCKET_POLL_SECONDS = 5.0  # docket's worker: 0.25 s; how often it checks for due and new background tasks
DOCKET_HEARTBEAT_SECONDS = 10.0  # docket's: 2 s; its worker registry, which Prefect does not read


def quiet_docket() -> bool:
    """Make the docket worker that runs Prefect's background services (late runs, scheduler, ...) poll every
    DOCKET_POLL_SECONDS and heartbeat every DOCKET_HEARTBEAT_SECONDS instead of 4 and 0.5 times a second, and not
    listen for task cancellations (10 polls a second; Prefect cancels no docket task): what an idle server spends
    most of its CPU on. A service runs at most that much later than its loop interval says; a task enqueued for
    now is read as it arrives (the worker blocks on its stream). False if it cannot."""
    try:
        from datetime import timedelta

        from prefect.server.api import background_workers
        from prefect.server.api import server as prefect_server
    except ImportError as exc:
        print(f"pnr: Prefect's background worker polls at its own pace: {exc}", file=sys.stderr)
        return False
    worker: Any = background_workers.Worker  # type: ignore[attr-defined]
    docket: Any = prefect_server.Docket  # type: ignore[attr-defined]
    if getattr(worker, "_pnr_quiet", False):
        return True
    poll = timedelta(seconds=DOCKET_POLL_SECONDS)

    class QuietWorker(worker):  # type: ignore[misc]
        _pnr_quiet = True

        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("minimum_check_interval", poll)
            kwargs.setdefault("scheduling_resolution", poll)
            super().__init__(*args, **kwargs)

        async def _cancellation_listener(self) -> None:
            # docket polls its cancellation channel 10 times a second for `docket.cancel()`, which Prefect never
            # calls: report the listener ready and wait for the worker to stop. docket's own if its internals moved.
            session = getattr(self, "_processing_session", None)
            ready, stopping = getattr(session, "cancellation_ready", None), getattr(session, "stopping", None)
            if not (isinstance(ready, asyncio.Event) and isinstance(stopping, asyncio.Event)):
                await super()._cancellation_listener()
                return
            ready.set()
            await stopping.wait()

    class QuietDocket(docket):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("heartbeat_interval", timedelta(seconds=DOCKET_HEARTBEAT_SECONDS))
            super().__init__(*args, **kwargs)

    background_workers.Worker = QuietWorker  # type: ignore[attr-defined]
    prefect_server.Docket = QuietDocket  # type: ignore[attr-defined]
    return True


TRIGGER_SWEEP_SECONDS = 30.0  # Prefect's: 5 s


def quiet_triggers() -> bool:
    """Make the automations service's periodic housekeeping run every TRIGGER_SWEEP_SECONDS instead of every 5 s:
    four database transactions (expired held events and buckets, reloading the automations when another
    server changed them, events whose predecessor never came). Reactive triggers still act on each event as it
    arrives, and proactive ones keep their own 5 s loop (a docket service). False if it cannot."""
    try:
        from prefect.server.events import triggers
    except ImportError as exc:
        print(f"pnr: automations keep Prefect's housekeeping pace: {exc}", file=sys.stderr)
        return False
    import inspect
    from datetime import timedelta

    original = triggers.consumer
    if getattr(original, "_pnr_wrapped", False):
        return True
    if "periodic_granularity" not in inspect.signature(original).parameters:
        print("pnr: automations keep Prefect's housekeeping pace (consumer changed)", file=sys.stderr)
        return False
    every = timedelta(seconds=TRIGGER_SWEEP_SECONDS)

    def consumer(periodic_granularity: timedelta = every) -> Any:
        return original(periodic_granularity=periodic_granularity)

    consumer._pnr_wrapped = True  # type: ignore[attr-defined]
    consumer._pnr_original = original  # type: ignore[attr-defined]
    triggers.consumer = consumer
    return True


UVICORN_TICK_SECONDS = 1.0  # uvicorn's: 0.1 s


def quiet_uvicorn() -> bool:
    """Make uvicorn's main loop wake once a second instead of ten times: it only refreshes the Date header
    (once a second either way) and checks whether to exit (a SIGTERM now ends the server up to a second later).
    False if uvicorn's loop is not the one expected."""
    try:
        from uvicorn.server import Server
    except ImportError as exc:
        print(f"pnr: uvicorn ticks at its own pace: {exc}", file=sys.stderr)
        return False
    if getattr(Server.main_loop, "_pnr_wrapped", False):
        return True
    if not callable(getattr(Server, "on_tick", None)):
        print("pnr: uvicorn ticks at its own pace (no on_tick)", file=sys.stderr)
        return False
    ticks = round(UVICORN_TICK_SECONDS * 10)  # on_tick counts tenths of a second

    async def main_loop(self: Any) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + ticks) % 864000
            await asyncio.sleep(UVICORN_TICK_SECONDS)
            should_exit = await self.on_tick(counter)

    original = Server.main_loop
    main_loop._pnr_wrapped = True  # type: ignore[attr-defined]
    main_loop._pnr_original = original  # type: ignore[attr-defined]
    Server.main_loop = main_loop  # type: ignore[method-assign]
    return True


TRIM_FIRST_SECONDS = 30.0  # after the start-up's migrations check and block registration
TRIM_EVERY_SECONDS = 300.0


def trim_memory_later() -> bool:
    """Give the memory the C allocator keeps after frees back to the system (glibc's `malloc_trim`): once
    TRIM_FIRST_SECONDS after the start (with a garbage collection first) and every TRIM_EVERY_SECONDS after that
    (milliseconds each). False where there is no glibc or no running event loop to schedule it on."""
    import ctypes
    import ctypes.util

    try:
        loop = asyncio.get_running_loop()
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        malloc_trim = libc.malloc_trim
    except (RuntimeError, OSError, AttributeError):
        return False

    def trim(collect: bool) -> None:
        if collect:
            import gc

            gc.collect()
        malloc_trim(0)
        loop.call_later(TRIM_EVERY_SECONDS, trim, False)

    loop.call_later(TRIM_FIRST_SECONDS, trim, True)
    return True


def as_executemany(statement: object) -> tuple[Insert, list[dict[str, object]]] | None:
    """`INSERT ... VALUES (row), (row), ...` as (the INSERT without its rows, the rows keyed by column), to be
    executed once per row; None unless it is plain: an INSERT with one list of rows that all name the same
    columns of its table, values that are not SQL expressions, and no RETURNING."""
    from sqlalchemy.sql import ClauseElement
    from sqlalchemy.sql.dml import Insert

    if not isinstance(statement, Insert) or statement._returning or statement._select_names:
        return None
    if len(statement._multi_values) != 1 or statement._values or getattr(statement, "_ordered_values", None):
        return None
    given = statement._multi_values[0]
    if not given or not all(isinstance(row, dict) for row in given):
        return None  # rows given as tuples: positional, left alone
    columns = list(given[0])
    keys = [k for k in (_column_key(statement.table, c) for c in columns) if k is not None]
    if not columns or len(keys) != len(columns):
        return None
    rows: list[dict[str, object]] = []
    for row in given:
        if len(row) != len(columns) or any(c not in row for c in columns):
            return None
        values = [row[c] for c in columns]
        if any(isinstance(v, ClauseElement) for v in values):
            return None
        rows.append(dict(zip(keys, values, strict=True)))
    bare = statement._generate()
    bare._multi_values = ()
    # "raw": the rows go to the driver as they are, as Prefect's own executemany of PostgreSQL events does (the
    # ORM's bulk mode would leave out None values, and the column defaults would fill them instead of NULL)
    return bare.execution_options(dml_strategy="raw"), rows


def _column_key(table: TableClause, key: object) -> str | None:
    """The key of `table`'s column that `key` (a Column of it, or a column key) names; None if it names none."""
    name = key if isinstance(key, str) else getattr(key, "key", None)
    if not isinstance(name, str) or name not in table.c:
        return None
    if not isinstance(key, str) and _plain(key) is not _plain(table.c[name]):  # the ORM's are annotated copies
        return None
    return name


def _plain(element: object) -> object:
    return element._deannotate() if hasattr(element, "_deannotate") else element


def _wrap_once(owner: type, name: str, wrap: Callable[[T], T]) -> None:
    """Replace `owner.name` by `wrap(original)`, marked, unless it is pnr's already (create_app may run twice)."""
    original = getattr(owner, name)
    if getattr(original, "_pnr_wrapped", False):
        return
    wrapped = wrap(original)
    # the original is what the tests compare against
    wrapped.__dict__.update(_pnr_wrapped=True, _pnr_original=original)
    setattr(owner, name, wrapped)


def plain_datetime(value: T) -> T | datetime.datetime:
    """The same instant as a plain `datetime` in UTC, for an aware datetime of a subclass (Pendulum's);
    anything else as it is (a naive one too: Prefect's own check refuses it)."""
    if type(value) is datetime.datetime or not isinstance(value, datetime.datetime) or value.tzinfo is None:
        return value
    naive = datetime.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
    )
    return (naive - (value.utcoffset() or datetime.timedelta(0))).replace(tzinfo=datetime.UTC)
