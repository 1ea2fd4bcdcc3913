"""The ASGI app of pnr's resident Prefect server: Prefect's own app, with one change for SQLite.

Prefect begins its SQLite transactions DEFERRED. A request that reads and then writes (creating a flow run, a
state change) fails with SQLITE_BUSY_SNAPSHOT when another write committed in between: SQLite cannot upgrade a
stale read snapshot, and its busy timeout does not apply. The server answers 503 and Prefect's client backs off
2 s, then 4, 8 (PrefectHQ/prefect#10188, #17473). Measured on 2 cores against pnr's server: of six flow runs
created at once, three waited ~2 s that way; six `pnr up`s at once started their first container 0.6 to 16 s
in. Here every transaction the API begins is IMMEDIATE: it takes SQLite's write lock at BEGIN, so writers queue
on the busy timeout (Prefect sets 60 s) instead of failing, and reads outside transactions are unaffected (WAL).
PostgreSQL is not touched. If Prefect's internals differ from what this expects, the app is Prefect's, as is.

`python -m uvicorn --factory pnr.prefect.server_app:create_app` (pnr.prefect.server builds that command).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any


def create_app() -> Any:
    immediate_sqlite_transactions()
    from prefect.server.api.server import create_app as prefect_app

    return prefect_app()


def immediate_sqlite_transactions() -> bool:
    """Make `AioSqliteConfiguration.begin_transaction` always BEGIN IMMEDIATE; False if it cannot."""
    try:
        from prefect.server.database.configurations import AioSqliteConfiguration
    except ImportError as exc:
        print(f"pnr: SQLite transactions stay DEFERRED: {exc}", file=sys.stderr)
        return False
    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "_pnr_immediate", False):
        return True

    @contextlib.asynccontextmanager
    async def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> AsyncIterator[Any]:
        async with original(self, session, with_for_update=True) as transaction:  # IMMEDIATE
            yield transaction

    begin_transaction._pnr_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]
    return True
