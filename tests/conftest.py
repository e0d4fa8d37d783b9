"""Shared fixtures: test-only detectors registered under ``test_*`` names
(removed from the registry after each test), and shields built from in-memory
policies that only name the detectors a test needs."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from mantlet.core import registry
from mantlet.core.types import Finding, ScanContext, Side
from mantlet.pipeline.shield import Shield
from mantlet.policy import Policy, load_policy_text

DetectFn = Callable[[str, ScanContext], Any]


class FakeDetector:
    """A detector whose ``detect`` is any callable; records what it was given."""

    def __init__(
        self,
        name: str,
        fn: DetectFn,
        sides: Side,
        light: bool = False,
        reads_original: bool = False,
        gil_bound: bool = False,
    ) -> None:
        self.name = name
        self.sides = sides
        self.light = light
        self.gil_bound = gil_bound
        self.reads_original = reads_original
        self._fn = fn
        self.calls: list[tuple[str, ScanContext]] = []
        self._lock = threading.Lock()

    def detect(self, text: str, context: ScanContext) -> list[Finding]:
        with self._lock:
            self.calls.append((text, context))
        result: list[Finding] = self._fn(text, context)
        return result


class DetectorRegistrar:
    """Registers test detectors and removes them from the registry afterwards."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.instances: dict[str, FakeDetector] = {}
        self.options_seen: dict[str, list[Mapping[str, Any]]] = {}

    def __call__(
        self,
        name: str,
        fn: DetectFn,
        *,
        sides: Side = Side.BOTH,
        light: bool = False,
        reads_original: bool = False,
        gil_bound: bool = False,
    ) -> str:
        assert name.startswith("test_"), "test detectors must be named test_*"
        assert name not in registry._FACTORIES, f"{name} is already registered"

        def factory(options: Mapping[str, Any]) -> FakeDetector:
            self.options_seen.setdefault(name, []).append(dict(options))
            detector = FakeDetector(name, fn, sides, light, reads_original, gil_bound)
            self.instances[name] = detector
            return detector

        registry.register(name)(factory)
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            registry._FACTORIES.pop(name, None)


@pytest.fixture
def register_detector() -> Iterator[DetectorRegistrar]:
    registrar = DetectorRegistrar()
    yield registrar
    registrar.cleanup()


@pytest.fixture
def make_shield() -> Iterator[Callable[[Mapping[str, Any] | str], Shield]]:
    """Build a Shield from a policy dict or YAML text; closed after the test."""
    shields: list[Shield] = []

    def build(policy: Mapping[str, Any] | str) -> Shield:
        if isinstance(policy, str):
            validated = load_policy_text(policy)
        else:
            validated = Policy.model_validate(dict(policy))
        shield = Shield(validated)
        shields.append(shield)
        return shield

    yield build
    for shield in shields:
        shield.close()


@pytest.fixture
def break_injection_model(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it once the model is loaded: from then on the injection model
    fails on every request, while the rules-only copy keeps working."""
    from mantlet.detectors.injection import InjectionDetector

    original = InjectionDetector._get_model

    def broken(self: InjectionDetector) -> Any:
        if self._options.use_model:
            raise RuntimeError("model file unreadable")
        return original(self)

    return lambda: monkeypatch.setattr(InjectionDetector, "_get_model", broken)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that blocking test detectors wait on; set at teardown so no
    worker thread outlives the test for long."""
    event = threading.Event()
    yield event
    event.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="session")
def live_server() -> type[LiveServer]:
    """Serves an ASGI app with uvicorn on a free loopback port:
    ``with live_server(app) as server: server.url``."""
    return LiveServer


def _start_together(count: int, start: Callable[[int], Any]) -> tuple[list[Any], list[Exception]]:
    """``start(i)`` for ``i`` in ``range(count)``, each on its own thread, all
    released at once (replicas booting together); answers the results and the
    exceptions raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[Exception] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results.append(start(index))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


@pytest.fixture(scope="session")
def start_together() -> Callable[..., tuple[list[Any], list[Exception]]]:
    """``start_together(count, start)``: see ``_start_together``."""
    return _start_together


_CLI = "from mantlet.cli.app import main; main()"


def mantlet_cli(*args: str) -> str:
    """Runs the `mantlet` command in a subprocess; returns its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", _CLI, *args], capture_output=True, text=True, check=True
    )
    return done.stdout


@contextlib.contextmanager
def gateway_processes(config: Path, count: int, *extra: str) -> Iterator[list[str]]:
    """`count` separate `mantlet serve` processes on one config (a real
    multi-replica deployment on loopback); yields their base URLs."""
    import httpx

    ports = [free_port() for _ in range(count)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CLI,
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("gateway did not become ready")
                time.sleep(0.2)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def replicas() -> Callable[..., contextlib.AbstractContextManager[list[str]]]:
    """``with replicas(config_path, 2[, "--workers", "2"]) as urls: ...``"""
    return gateway_processes


@pytest.fixture(scope="session")
def cli_process() -> Callable[..., str]:
    return mantlet_cli
