"""The ASGI app of pnr's resident Prefect server: Prefect's own app, with two changes (each a no-op if Prefect's
internals differ from what it expects; the app is then Prefect's, as is).

**SQLite transactions begin IMMEDIATE.**

Prefect begins its SQLite transactions DEFERRED. A request that reads and then writes (creating a flow run, a
state change) fails with SQLITE_BUSY_SNAPSHOT when another write committed in between: SQLite cannot upgrade a
stale read snapshot, and its busy timeout does not apply. The server answers 503 and Prefect's client backs off
2 s, then 4, 8 (PrefectHQ/prefect#10188, #17473). Measured on 2 cores against pnr's server: of six flow runs
created at once, three waited ~2 s that way; six `pnr up`s at once started their first container 0.6 to 16 s
in. Here every transaction the API begins is IMMEDIATE: it takes SQLite's write lock at BEGIN, so writers queue
on the busy timeout (Prefect sets 60 s) instead of failing, and reads outside transactions are unaffected (WAL).
PostgreSQL is not touched.

**Timestamps are bound as standard-library datetimes.** Prefect 3.9's datetimes are Pendulum subclasses whose
every operation goes through a deprecation shim, and asyncpg encodes a timestamp by subtracting its epoch from it:
for a Pendulum value that builds a Pendulum `Interval` (a calendar difference) and wraps it again. Measured in a
py-spy profile of pnr's PostgreSQL-backed server during a 500-chunk `pnr up`: 27 % of the server's busy CPU was
that subtraction, inside the inserts of events, their resources and task-run states. The value bound is the same
instant as a plain `datetime` in UTC, so the database stores the same thing. SQLite's binding is left as it is
(it formats the fields; no arithmetic).

`python -m uvicorn --factory pnr.prefect.server_app:create_app` (pnr.prefect.server builds that command).
"""

from __future__ import annotations

import contextlib
import datetime
import sys
from collections.abc import AsyncIterator
from typing import Any


def create_app() -> Any:
    immediate_sqlite_transactions()
    plain_timestamp_binds()
    from prefect.server.api.server import create_app as prefect_app

    return prefect_app()


def immediate_sqlite_transactions() -> bool:
    """Make `AioSqliteConfiguration.begin_transaction` always BEGIN IMMEDIATE; False if it cannot."""
    try:
        from prefect.server.database.configurations import AioSqliteConfiguration
    except ImportError as exc:
        print(f"pnr: SQLite transactions stay DEFERRED: {exc}", file=sys.stderr)
        return False

    def immediate(original: Any) -> Any:
        @contextlib.asynccontextmanager
        async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> AsyncIterator[Any]:
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

    def plain(original: Any) -> Any:
        def process_bind_param(self: Any, value: Any, dialect: Any) -> Any:
            # SQLite's binding formats the value by its fields, no arithmetic: converting would only cost (~1 us)
            return original(self, value if dialect.name == "sqlite" else plain_datetime(value), dialect)

        return process_bind_param

    _wrap_once(Timestamp, "process_bind_param", plain)
    return True


def _wrap_once(owner: Any, name: str, wrap: Any) -> None:
    """Replace `owner.name` by `wrap(original)`, marked, unless it is pnr's already (create_app may run twice)."""
    original = getattr(owner, name)
    if getattr(original, "_pnr_wrapped", False):
        return
    wrapped = wrap(original)
    wrapped._pnr_wrapped = True
    setattr(owner, name, wrapped)


def plain_datetime(value: Any) -> Any:
    """The same instant as a plain `datetime` in UTC, for an aware datetime of a subclass (Pendulum's);
    anything else as it is (a naive one too: Prefect's own check refuses it)."""
    if type(value) is datetime.datetime or not isinstance(value, datetime.datetime) or value.tzinfo is None:
        return value
    naive = datetime.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
    )
    return (naive - (value.utcoffset() or datetime.timedelta(0))).replace(tzinfo=datetime.UTC)
