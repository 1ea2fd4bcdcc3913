"""pnr's flows store their parameters as Prefect's own encoder would, without importing FastAPI for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from prefect import Flow

from pnr.prefect.flows import RunRef, bring_up, cpux_flow, tear_down
from pnr.prefect.params import JsonFlow, pnr_flow

PARAMETERS = [
    {"config_path": "config/dev_stack.json", "cpux": None, "runtime_dir": None, "timeout_seconds": 30.5},
    {"build": True, "watch": False, "env_files": ["a.env", "b.env"], "watch_seconds": None},
    {"config_path": "c.json", "cpux": "main", "run": RunRef(domain="dev", run_id=str(uuid.uuid4()))},
    {"nested": {"a": [1, 2.5, "x", None, (3, 4)], "b": {"c": True}}},
]


def _any(**kwargs: object) -> None:
    pass


@pytest.mark.parametrize("parameters", PARAMETERS)
def test_same_data_as_prefects_encoder(parameters: dict[str, object]) -> None:
    plain = Flow(_any, name="plain")
    assert cpux_flow.serialize_parameters(parameters) == plain.serialize_parameters(parameters)


def test_other_values_go_to_prefects_encoder() -> None:
    parameters = {"path": Path("/tmp/x"), "id": uuid.UUID(int=7), "keys": {1: "one"}}
    plain = Flow(_any, name="plain")
    assert cpux_flow.serialize_parameters(parameters) == plain.serialize_parameters(parameters)
    assert cpux_flow.serialize_parameters(parameters)["path"] == "/tmp/x"


def test_every_flow_and_its_copies_keep_the_encoder() -> None:
    for flow in (bring_up, cpux_flow, tear_down):
        assert isinstance(flow, JsonFlow)
        copy = flow.with_options(flow_run_name="x.y")
        assert isinstance(copy, JsonFlow)
        assert copy.flow_run_name == "x.y" and copy.name == flow.name and copy.fn is flow.fn


def test_decorator_passes_the_options() -> None:
    @pnr_flow(name="named", persist_result=False, validate_parameters=False)
    def f(a: int) -> int:
        return a

    assert isinstance(f, JsonFlow)
    assert (f.name, f.persist_result, f.should_validate_parameters) == ("named", False, False)


def test_no_fastapi_import() -> None:
    """In a process of its own: encoding pnr's parameters leaves FastAPI unimported (its import costs a runner
    process ~0.4 s of CPU on its first run)."""
    code = textwrap.dedent(
        """
        import sys
        from pnr.prefect.flows import RunRef, bring_up, cpux_flow
        cpux_flow.with_options(flow_run_name="d.c").serialize_parameters(
            {"config_path": "c.json", "cpux": "c", "run": RunRef(domain="d", run_id="r")})
        bring_up.serialize_parameters({"config_path": "c.json", "env_files": ["x.env"], "timeout_seconds": 3.0})
        print("fastapi" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
