"""Scalar types and the small value models every config model shares: names, signal names, truth
values, seconds, PnR signal values, status mappings, JSON paths and HTTP status codes."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

# Names of domains, cpuxs, chunks and engines: a chunk's name is its container's alias on the domain network
# (one DNS label: at most 63 characters), a domain's name is part of its network's and volumes' names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Container names: the engine's own rule (Docker's RestrictedNamePattern, at least 2 characters, no length limit
# of its own; compose's `<project>-<service>-1` is often longer than 63). pnr bounds it at 253, a DNS name's length.
CONTAINER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,252}$")
MAX_SECONDS = 86_400  # every duration of a config: at most a day
_SIGNAL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


def check_name(value: str) -> str:
    """`value` if it is a valid domain, cpux, chunk or engine name; else ValueError saying the rule."""
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


def check_container_name(value: str) -> str:
    """`value` if the engine accepts it as a container name; else ValueError saying the rule."""
    if len(value) < 2:
        raise ValueError(f"container name {value!r} is too short: Docker needs at least 2 characters")
    if not CONTAINER_NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid container name: use 2-253 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit (the engine's rule)"
        )
    return value


def check_signal_name(value: str) -> str:
    if not _SIGNAL_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid signal name: use letters, digits, '_', '.', ':' or '-' (at most 128)"
        )
    return value


def _upper_tv(value: object) -> object:
    return value.upper() if isinstance(value, str) and len(value) == 1 else value  # "yes" is reported as written


Name = Annotated[str, AfterValidator(check_name)]
ContainerName = Annotated[str, AfterValidator(check_container_name)]
SignalName = Annotated[str, AfterValidator(check_signal_name)]
# the schema lists lower case too: PnR configs write "tv": "y" and editors must not flag it
TruthValue = Annotated[
    Literal["Y", "N", "U"],
    BeforeValidator(_upper_tv),
    WithJsonSchema(
        {"type": "string", "enum": ["Y", "N", "U", "y", "n", "u"], "description": "trivalent truth value, any case"}
    ),
]
# strict: `true` is not 1 second; inf/nan are refused rather than compared
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, strict=True, allow_inf_nan=False)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PnR(Model):
    """A signal value: prompt, response, trivalent truth value (any case in, upper case stored)."""

    prompt: str = ""
    response: list[str] = Field(default_factory=list)
    tv: TruthValue = "U"


class GatePnR(PnR):
    """A gatekeeper entry: the same PnR, but `tv` must be given. A gate that defaulted to U would hold while the
    signal is still unwritten, so the chunk would start at once instead of waiting."""

    tv: TruthValue


class MappedSignal(Model):
    """What a probe outcome writes: `key` is the signal name."""

    key: SignalName
    response: list[str] = Field(default_factory=list)
    tv: TruthValue

    def to_pnr(self, prompt: str = "") -> PnR:
        return PnR(prompt=prompt, response=list(self.response), tv=self.tv)


class StatusMapping(Model):
    success: MappedSignal | None = None
    failure: MappedSignal | None = None


NonNegSeconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]
_JSON_PATH_RE = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def parse_json_path(path: str) -> list[str | int]:
    """`$.checks[0].status` (or `checks[0].status`) as steps: ['checks', 0, 'status']."""
    rest = path.removeprefix("$")
    steps: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _JSON_PATH_RE.match(rest, pos)
        if not m or m.end() == pos:
            raise ValueError(f"json_path {path!r} must look like '$.status' or '$.checks[0].status'")
        steps.append(int(m.group(2)) if m.group(2) is not None else m.group(1))
        pos = m.end()
    if not steps:
        raise ValueError(f"json_path {path!r} names no field; write e.g. '$.status'")
    return steps


_CODE_RE = re.compile(r"^(?:(?P<cls>[1-5])xx|(?P<lo>\d{3})(?:-(?P<hi>\d{3}))?)$")


def parse_expected_code(value: int | list[int] | str) -> list[tuple[int, int]]:
    """200 → [(200, 200)]; [200, 204] → two ranges; "2xx" → [(200, 299)]; "200-204" → [(200, 204)]."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected_code must not be an empty list")
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int):
            lo = hi = item
        else:
            m = _CODE_RE.match(str(item).strip().lower())
            if not m:
                raise ValueError(
                    f"expected_code {item!r} must be a status (200), a list ([200, 204]), a class ('2xx') "
                    "or a range ('200-299')"
                )
            if m["cls"]:
                lo, hi = int(m["cls"]) * 100, int(m["cls"]) * 100 + 99
            else:
                lo = int(m["lo"])
                hi = int(m["hi"]) if m["hi"] else lo
        if not (100 <= lo <= hi <= 599):
            raise ValueError(f"expected_code {item!r} is outside 100-599 (or its range is reversed)")
        out.append((lo, hi))
    return out


def _check_codes(value: int | list[int] | str) -> int | list[int] | str:
    parse_expected_code(value)
    return value
