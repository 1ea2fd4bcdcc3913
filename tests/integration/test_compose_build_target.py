"""`build.target` of a compose file reaches the engine: pnr builds the named stage, not the Dockerfile's last."""

from __future__ import annotations

import contextlib
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_IMAGE

from pnr.compose import import_compose
from pnr.engines.engine import Engine
from pnr.model import parse_domain

pytestmark = [pytest.mark.docker]


def test_the_target_stage_is_built(tmp_path: Path, docker_client: Any) -> None:
    project = f"pnrtarget{uuid.uuid4().hex[:8]}"
    folder = tmp_path / project
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "Dockerfile").write_text(
        textwrap.dedent(
            f"""
            FROM {TEST_IMAGE} AS dev
            LABEL io.pnrtest.stage=dev
            FROM {TEST_IMAGE} AS prod
            LABEL io.pnrtest.stage=prod
            """
        )
    )
    (folder / "compose.yaml").write_text("services:\n  app: {build: {context: ./app, target: dev}}\n")
    domain = parse_domain(import_compose(folder, environ={}).domain)
    (chunk,) = domain.cpuxs[project].design_chunks
    assert chunk.container.build_target == "dev"
    image_id = None
    try:
        image_id = Engine().ensure_image(project, chunk, folder, build=True)
        assert docker_client.images.get(image_id).labels.get("io.pnrtest.stage") == "dev"
    finally:
        if image_id is not None:
            with contextlib.suppress(Exception):
                docker_client.images.remove(image_id, force=True)
