"""pnr's Prefect server app binds Prefect's (Pendulum) timestamps as plain UTC datetimes: the same instants."""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
import pytest
from prefect.server.utilities.database import Timestamp
from prefect.types._datetime import now
from sqlalchemy.dialects import postgresql, sqlite

from pnr.prefect.server_app import plain_datetime, plain_timestamp_binds

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
