"""Engine resolution as the docker CLI does it, each step against a fake HOME / DOCKER_CONFIG (no daemon)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pnr.engines import Engine
from pnr.engines import resolve as r
from pnr.exceptions import ConfigError, EngineError


def _context(config: Path, name: str, host: str, *, skip_verify: bool = False, tls: tuple[str, ...] = ()) -> None:
    """What `docker context create NAME --docker host=HOST` writes."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}))
    if tls:
        folder = config / "contexts" / "tls" / digest / "docker"
        folder.mkdir(parents=True)
        for part in tls:
            (folder / f"{part}.pem").write_text("PEM")


def _use(config: Path, name: str) -> None:
    """What `docker context use NAME` writes."""
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))


def _none(url: str) -> bool:
    return False


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_docker_host_comes_first_and_wins_over_every_context(home: Path) -> None:
    _context(home / ".docker", "two", "tcp://127.0.0.2:2375")
    _use(home / ".docker", "two")
    env = {"HOME": str(home), "DOCKER_HOST": "tcp://10.1.2.3:2375", "DOCKER_CONTEXT": "two"}
    found = r.resolve_endpoint(env, exists=_none)
    assert (found.host, found.source, found.tls, found.context) == ("tcp://10.1.2.3:2375", "DOCKER_HOST", None, None)
    assert found.tried == ("DOCKER_HOST=tcp://10.1.2.3:2375",)


def test_docker_host_with_tls_variables(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for part in ("ca", "cert", "key"):
        (certs / f"{part}.pem").write_text("PEM")
    env = {"DOCKER_HOST": "tcp://10.1.2.3:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    tls = r.resolve_endpoint(env).tls
    assert tls == r.TlsFiles(str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"), verify=True)


def test_docker_context_names_a_context_of_the_store(home: Path) -> None:
    config = home / ".docker"
    _context(config, "two", "tcp://127.0.0.2:2375")
    _context(config, "three", "unix:///tmp/three.sock")
    _use(config, "three")  # DOCKER_CONTEXT wins over the current context
    found = r.resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "two"}, exists=_none)
    assert (found.host, found.context, found.tls) == ("tcp://127.0.0.2:2375", "two", None)
    assert found.source.startswith("DOCKER_CONTEXT=two (") and str(config / "contexts" / "meta") in found.source
    assert found.tried == ("DOCKER_HOST: not set", "DOCKER_CONTEXT=two: tcp://127.0.0.2:2375")


def test_the_current_context_of_config_json_under_docker_config(tmp_path: Path) -> None:
    config = tmp_path / "dockercfg"
    _context(config, "colima", "unix:///Users/me/.colima/default/docker.sock")
    _use(config, "colima")
    env = {"HOME": str(tmp_path / "elsewhere"), "DOCKER_CONFIG": str(config)}
    found = r.resolve_endpoint(env, exists=_none)
    assert (found.host, found.context) == ("unix:///Users/me/.colima/default/docker.sock", "colima")
    assert found.source.startswith(f"current context colima ({config / 'config.json'})")
    assert found.tried[:2] == ("DOCKER_HOST: not set", "DOCKER_CONTEXT: not set")


def test_context_tls_material_and_skip_verify(home: Path) -> None:
    config = home / ".docker"
    _context(config, "secure", "tcp://10.0.0.5:2376", tls=("ca", "cert", "key"))
    _context(config, "lax", "tcp://10.0.0.6:2376", skip_verify=True)
    folder = config / "contexts" / "tls" / hashlib.sha256(b"secure").hexdigest() / "docker"
    secure = r.resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "secure"}).tls
    assert secure == r.TlsFiles(str(folder / "ca.pem"), str(folder / "cert.pem"), str(folder / "key.pem"), True)
    assert r.resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "lax"}).tls == r.TlsFiles(verify=False)


def test_an_unknown_context_names_the_store_looked_in(home: Path) -> None:
    _use(home / ".docker", "gone")
    with pytest.raises(r.UnknownContext) as caught:
        r.resolve_endpoint({"HOME": str(home)})
    text = str(caught.value)
    assert "no Docker context named 'gone'" in text and str(home / ".docker" / "contexts") in text
    assert "docker context ls" in text
    with pytest.raises(r.UnknownContext, match="DOCKER_CONTEXT=nope"):
        r.resolve_endpoint({"HOME": str(home), "DOCKER_CONTEXT": "nope"})


def test_a_broken_config_json_is_a_clear_error(home: Path) -> None:
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text("{not json")
    with pytest.raises(EngineError, match=r"config\.json: not a readable docker CLI config"):
        r.resolve_endpoint({"HOME": str(home)})


def test_the_default_context_means_no_context(home: Path) -> None:
    _context(home / ".docker", "two", "tcp://127.0.0.2:2375")
    _use(home / ".docker", "two")
    env = {"HOME": str(home), "DOCKER_CONTEXT": "default"}  # wins over currentContext: the usual sockets
    found = r.resolve_endpoint(env, platform="linux", exists=lambda url: url == "unix:///run/podman/podman.sock")
    assert (found.host, found.context) == ("unix:///run/podman/podman.sock", None)
    _use(home / ".docker", "default")
    assert r.resolve_endpoint({"HOME": str(home)}, exists=_none).host == "unix:///var/run/docker.sock"


def test_linux_sockets_in_order_the_first_that_exists() -> None:
    env = {"HOME": "/home/me", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert r.usual_sockets(env, "linux") == [
        "unix:///var/run/docker.sock",
        "unix:///run/user/1000/docker.sock",
        "unix:///run/podman/podman.sock",
        "unix:///run/user/1000/podman/podman.sock",
    ]
    found = r.resolve_endpoint(env, platform="linux", exists=lambda url: "1000/podman" in url)
    assert found.host == "unix:///run/user/1000/podman/podman.sock"
    assert found.source == "the usual socket unix:///run/user/1000/podman/podman.sock"
    assert found.tried[-2:] == ("unix:///run/podman/podman.sock: absent", f"{found.host}: found")


def test_macos_and_windows_lists() -> None:
    mac = r.usual_sockets({"HOME": "/Users/me"}, "darwin")
    assert mac[:6] == [
        "unix:///Users/me/.docker/run/docker.sock",
        "unix:///var/run/docker.sock",
        "unix:///Users/me/.colima/default/docker.sock",
        "unix:///Users/me/.colima/docker.sock",
        "unix:///Users/me/.orbstack/run/docker.sock",
        "unix:///Users/me/.rd/docker.sock",
    ]
    assert any("podman/machine" in url for url in mac[6:])
    podman5 = r.usual_sockets({"HOME": "/Users/me", "TMPDIR": "/var/folders/x/T"}, "darwin")[-1]
    assert podman5 == "unix:///var/folders/x/T/podman/podman-machine-default-api.sock"
    assert r.usual_sockets({}, "win32") == [
        "npipe:////./pipe/docker_engine",
        "npipe:////./pipe/dockerDesktopLinuxEngine",
    ]
    assert r.platform_key("win32") == "win32" and r.platform_key("darwin") == "darwin"
    assert r.platform_key("linux") == "linux" and r.platform_key("freebsd14") == "linux"


def test_no_socket_at_all_lists_every_place_and_what_to_do(home: Path) -> None:
    found = r.resolve_endpoint({"HOME": str(home)}, platform="darwin", exists=_none)
    assert found.host == f"unix://{home}/.docker/run/docker.sock"
    assert found.source == "the usual sockets (none found)"
    hint = r.unreachable_hint(found, "darwin")
    assert "DOCKER_HOST: not set" in hint and "DOCKER_CONTEXT: not set" in hint
    assert f"{home}/.colima/default/docker.sock: absent" in hint
    assert hint.index(".docker/run/docker.sock") < hint.index(".orbstack")
    assert "colima start" in hint and "docker context use" in hint and "DOCKER_HOST" in hint.splitlines()[-1]


def test_endpoints_compare_by_host_and_tls_not_by_where_they_came_from() -> None:
    a = r.Endpoint("tcp://127.0.0.2:2375", "DOCKER_HOST", tried=("x",))
    b = r.Endpoint("tcp://127.0.0.2:2375", "DOCKER_HOST", tried=("y",))
    assert a.identity() == b.identity() == {"host": "tcp://127.0.0.2:2375", "tls": None}
    assert a.identity() != r.Endpoint("unix:///var/run/docker.sock", "DOCKER_HOST").identity()


def test_the_engine_builds_its_client_from_the_endpoint(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Explicit base_url / tls / timeout: docker-py's own lookup (DOCKER_HOST, its context fallback) is not used."""
    import docker

    from pnr.engines.engine import Engine

    made: list[dict[str, Any]] = []

    class FakeClient:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            self.api = type("Api", (), {"base_url": "http://127.0.0.2:2375"})()

    monkeypatch.setattr(docker, "DockerClient", FakeClient)
    _context(home / ".docker", "two", "tcp://127.0.0.2:2375")
    _use(home / ".docker", "two")
    for key in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    engine = Engine()
    assert engine.client is not None
    assert made == [{"base_url": "tcp://127.0.0.2:2375", "timeout": made[0]["timeout"], "tls": False}]
    assert engine.describe() == "the default engine (tcp://127.0.0.2:2375)"
    assert engine.endpoint.context == "two"


def test_unreachable_default_engine_message_lists_the_places(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from pnr.engines.engine import Engine
    from pnr.exceptions import EngineUnreachable

    _context(home / ".docker", "dead", "tcp://127.0.0.1:1")
    _use(home / ".docker", "dead")
    for key in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(EngineUnreachable) as caught:
        Engine().ping()
    text = str(caught.value)
    assert "cannot reach the Docker engine tcp://127.0.0.1:1 (from current context dead" in text
    assert "DOCKER_HOST: not set" in text and "current context dead" in text and "docker context use" in text


# -- engines.NAME.context ---------------------------------------------------------------------------------
def _domain(engines: dict[str, Any]) -> dict[str, Any]:
    chunk = {"name": "a", "engine": "two", "container": {"name": "pnr-a", "image": "busybox"}}
    return {"name": "d", "engines": engines, "cpuxs": {"main": {"design_chunks": [chunk]}}}


def _load(tmp_path: Path, engines: dict[str, Any]) -> Any:
    from pnr.model.plan import load_plan

    path = tmp_path / "d.json"
    path.write_text(json.dumps(_domain(engines)))
    return load_plan(str(path))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"host": "tcp://127.0.0.2:2375", "context": "two"}, "give exactly one of 'host'"),
        ({}, "give exactly one of 'host'"),
        ({"context": "two", "tls": {"verify": False}}, "a context brings its own TLS material"),
        ({"context": "no spaces"}, "is not a docker context name"),
    ],
)
def test_an_engine_entry_names_a_host_or_a_context(tmp_path: Path, spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, {"two": spec})
    assert expected in str(caught.value) and "engines.two" in str(caught.value)


def test_engines_context_is_read_from_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    config = tmp_path / "cfg"
    _context(config, "two", "tcp://127.0.0.2:2375")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    plan = _load(tmp_path, {"two": {"context": "two"}})
    engine = Engine().engine_set(plan)["two"]
    assert (engine.host, engine.endpoint.context, engine.address) == ("tcp://127.0.0.2:2375", "two", "127.0.0.1")
    assert engine.describe() == "engine two (tcp://127.0.0.2:2375)"


def test_an_unknown_engines_context_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    plan = _load(tmp_path, {"two": {"context": "nowhere"}})
    with pytest.raises(ConfigError) as caught:
        Engine().engine_set(plan)
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'd.json'}: engines.two.context: ")
    assert "no Docker context named 'nowhere'" in text and str(tmp_path / "cfg" / "contexts") in text


# -- the resident runner's check, pnr doctor's facts -------------------------------------------------------
def test_the_runner_serves_a_client_only_for_the_same_resolved_engine(home: Path) -> None:
    from pnr.backend.runner import engine_env

    _context(home / ".docker", "two", "tcp://127.0.0.2:2375")
    via_variable = engine_env({"HOME": str(home), "DOCKER_CONTEXT": "two"})
    _use(home / ".docker", "two")
    assert engine_env({"HOME": str(home)}) == via_variable  # the same engine, found another way
    assert engine_env({"HOME": str(home), "DOCKER_HOST": "tcp://127.0.0.2:2375"}) == via_variable
    _use(home / ".docker", "default")  # `docker context use default`: another engine now
    assert engine_env({"HOME": str(home)}) != via_variable
    assert engine_env({"HOME": str(home), "DOCKER_CONTEXT": "gone"})["endpoint"]["error"].startswith("DOCKER_CONTEXT")


def test_doctor_reads_docker_and_podman_answers() -> None:
    from pnr.cli.doctor import engine_facts

    docker_facts = engine_facts(
        {
            "Version": "20.10.24",
            "ApiVersion": "1.41",
            "Os": "linux",
            "Arch": "amd64",
            "Components": [{"Name": "Engine"}],
        },
        {"Name": "vm", "SecurityOptions": ["name=seccomp,profile=default"]},
    )
    assert docker_facts["product"] == "Docker Engine" and docker_facts["os/arch"] == "linux/amd64"
    assert docker_facts["rootless"] is False
    podman = engine_facts(
        {"Version": "4.3.1", "Os": "linux", "Arch": "arm64", "Components": [{"Name": "Podman Engine"}]},
        {"SecurityOptions": ["name=seccomp", "name=rootless"]},
    )
    assert (podman["product"], podman["rootless"], podman["server version"]) == ("Podman Engine", True, "4.3.1")
