"""pnr's flows: Prefect flows whose parameters are stored as the JSON they already are.

Prefect stores a flow run's parameters through FastAPI's `jsonable_encoder`, importing FastAPI for it in the
process that creates the run: on the runner's first run in a process, about 0.4 s of CPU (FastAPI builds its
OpenAPI models when imported), paid by every runner process a burst of bring-ups forks. pnr's parameters are plain
JSON values and pydantic models, which encode here to the same data without that import; anything else still goes
through Prefect's own encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Flow
from pydantic import BaseModel

P = ParamSpec("P")
R = TypeVar("R")


class _NotPlain(Exception):
    """A value `_plain` leaves to Prefect's encoder."""


def _plain(value: object) -> object:
    """`value` as `jsonable_encoder` returns it, for JSON values and pydantic models; else _NotPlain."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise _NotPlain


class JsonFlow(Flow[P, R]):
    """A Prefect flow whose JSON parameters are stored without FastAPI's encoder (see the module)."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        try:
            return {key: _plain(value) for key, value in parameters.items()}
        except _NotPlain:
            return super().serialize_parameters(parameters)

    def with_options(self, *args: Any, **kwargs: Any) -> JsonFlow[P, R]:
        copy = super().with_options(*args, **kwargs)
        copy.__class__ = JsonFlow  # Prefect builds a plain Flow: the same object, with this class's encoder
        return cast(JsonFlow[P, R], copy)


def pnr_flow(**options: Any) -> Callable[[Callable[P, R]], JsonFlow[P, R]]:
    """`@flow(**options)`, making a JsonFlow."""

    def decorate(fn: Callable[P, R]) -> JsonFlow[P, R]:
        return JsonFlow(fn, **options)

    return decorate
