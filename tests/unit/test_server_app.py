"""pnr's Prefect server app binds Prefect's (Pendulum) timestamps as plain UTC datetimes (the same instants), and
runs plain multi-row inserts as one executemany (the same rows)."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from pathlib import Path
from typing import Any

import pendulum
import pytest
import sqlalchemy as sa
from prefect.server.utilities.database import Timestamp
from prefect.types._datetime import now
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase

from pnr.backend.server_app import as_executemany, executemany_inserts, plain_datetime, plain_timestamp_binds

BERLIN_WINTER = pendulum.datetime(2026, 12, 3, 8, 30, 15, 123456, tz="Europe/Berlin")


@pytest.mark.parametrize("value", [now("UTC"), BERLIN_WINTER, pendulum.datetime(2026, 7, 1, 23, 59, tz="Asia/Tokyo")])
def test_an_aware_subclass_becomes_a_plain_datetime_of_the_same_instant(value: datetime.datetime) -> None:
    plain = plain_datetime(value)
    assert type(plain) is datetime.datetime
    assert plain == value and plain.utcoffset() == datetime.timedelta(0)
    assert plain.timestamp() == value.timestamp()


def test_what_is_already_plain_naive_or_not_a_datetime_is_left_alone() -> None:
    aware = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)
    naive = datetime.datetime(2026, 12, 3)
    for value in (aware, naive, None, "2026-12-03"):
        assert plain_datetime(value) is value


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()], ids=["postgresql", "sqlite"])
def test_prefects_timestamp_column_binds_plain_datetimes_except_on_sqlite(dialect: Any) -> None:
    assert plain_timestamp_binds() and plain_timestamp_binds()  # idempotent
    bound = Timestamp().process_bind_param(BERLIN_WINTER, dialect)
    assert bound == BERLIN_WINTER and bound.hour == 7 and bound.utcoffset() == datetime.timedelta(0)
    # SQLite formats the value by its fields: left as Prefect binds it
    assert (type(bound) is datetime.datetime) is (dialect.name == "postgresql")
    assert Timestamp().process_bind_param(None, dialect) is None
    with pytest.raises(ValueError, match="timezone"):  # Prefect's own check still refuses a naive one
        Timestamp().process_bind_param(datetime.datetime(2026, 12, 3), dialect)


# -- multi-row inserts as executemany ------------------------------------------------------------------------

_counter = itertools.count(1)
meta = sa.MetaData()
things = sa.Table(
    "things",
    meta,
    sa.Column("id", sa.String, primary_key=True, default=lambda: f"generated-{next(_counter)}"),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("note", sa.String, nullable=True, default="a default"),  # None given: must stay NULL
    sa.Column("payload", sa.JSON, nullable=True),
)


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __table__ = things


ROWS = [
    {"name": "a", "note": None, "payload": {"k": [1, 2]}},
    {"name": "b", "note": "given", "payload": None},
    {"name": "c", "note": None, "payload": {"k": "v"}},
]
IDS = [{"id": f"given-{i}", **row} for i, row in enumerate(ROWS)]


def _insert_and_read(statement: Any, tmp_path: Path, patched: bool) -> tuple[list[tuple[Any, ...]], list[bool]]:
    """Run `statement` through an AsyncSession on a fresh SQLite file (Prefect's path, or with pnr's change);
    the rows stored, and for every INSERT sent to the driver whether it was an executemany."""
    from sqlalchemy.ext.asyncio import AsyncSession

    many: list[bool] = []

    async def run() -> list[tuple[Any, ...]]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / ('p' if patched else 'o')}.db")
        sa.event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, sql, _p, _ctx, executemany: many.append(executemany) if sql.startswith("INSERT") else None,
        )
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            await conn.execute(things.insert().values(id="taken", name="before"))
        async with AsyncSession(engine) as session:
            execute = AsyncSession.execute
            try:
                if patched:
                    executemany_inserts()
                else:
                    AsyncSession.execute = getattr(execute, "_pnr_original", execute)  # type: ignore[method-assign]
                await session.execute(statement)
                await session.commit()
            finally:
                AsyncSession.execute = execute  # type: ignore[method-assign]
            rows = (await session.execute(sa.select(things).order_by(things.c.name))).all()
        await engine.dispose()
        return [tuple(r) for r in rows]

    return asyncio.run(run()), many


@pytest.mark.parametrize(
    "make",
    [
        lambda: sqlite_insert(Thing).values(ROWS),  # ORM-enabled, as Prefect's (annotated column keys)
        lambda: things.insert().values(ROWS),  # Core, string keys
        lambda: (
            sqlite_insert(Thing)
            .values([*IDS, {"id": "taken", "name": "dup", "note": None, "payload": None}])
            .on_conflict_do_nothing()
        ),
    ],
    ids=["orm", "core", "on-conflict"],
)
def test_a_plain_multi_row_insert_stores_the_same_rows_as_one_executemany(make: Any, tmp_path: Path) -> None:
    original, sent_original = _insert_and_read(make(), tmp_path, patched=False)
    changed, sent_changed = _insert_and_read(make(), tmp_path, patched=True)
    assert [r[1:] for r in changed] == [r[1:] for r in original]  # the ids a default made: from a counter
    assert ("taken", "before", "a default", None) in changed  # ON CONFLICT kept: the row that was there stays
    assert [r[2] for r in changed if r[1] in ("a", "c")] == [None, None]  # None stays NULL, not the default
    assert len({r[0] for r in changed}) == len(changed)  # the id default was called for every row
    assert sent_original[-1] is False and sent_changed[-1] is True  # Prefect's: one multi-row INSERT


def test_an_insert_that_is_not_plain_is_left_as_it_is() -> None:
    assert as_executemany(things.insert().values(ROWS).returning(things.c.id)) is None  # RETURNING
    assert as_executemany(things.insert().values(name="one")) is None  # one row, given by keywords
    assert as_executemany(things.insert().values([ROWS[0], {"name": "b"}])) is None  # different columns
    assert as_executemany(things.insert().values([{"name": sa.func.upper("x")}, {"name": "y"}])) is None
    assert as_executemany(things.insert().values([("i", "n", None, None), ("j", "m", None, None)])) is None
    assert as_executemany(sa.select(things)) is None
    plain = as_executemany(things.insert().values(ROWS))
    assert plain is not None and plain[1] == ROWS and not plain[0]._multi_values


def test_prefects_own_inserts_of_logs_and_task_run_states_qualify() -> None:
    from prefect.server.database import provide_database_interface

    db = provide_database_interface()
    at = now("UTC")
    log = {"name": "n", "level": 20, "message": "m", "timestamp": at, "flow_run_id": None, "task_run_id": None}
    assert as_executemany(db.queries.insert(db.Log).values([log, log])) is not None
    state = {"type": "RUNNING", "timestamp": at, "name": "Running", "message": None, "state_details": {}, "data": None}
    split = as_executemany(
        db.queries.insert(db.TaskRunState)
        .values([{"created": at, "task_run_id": uuid.uuid4(), **state}] * 2)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    assert split is not None and "data" in split[1][0]  # the ORM attribute `_data` is the column `data`


def test_if_sqlalchemys_internals_moved_the_insert_runs_as_prefect_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pnr.backend.server_app as server_app

    def moved(_statement: Any) -> None:
        raise AttributeError("'Insert' object has no attribute '_multi_values'")

    monkeypatch.setattr(server_app, "as_executemany", moved)
    stored, sent = _insert_and_read(things.insert().values(ROWS), tmp_path, patched=True)
    assert [r[1] for r in stored] == ["a", "b", "before", "c"] and sent[-1] is False
