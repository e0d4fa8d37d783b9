"""Graceful shutdown of a real `mantlet serve` process: on SIGTERM it stops
accepting connections, lets a stream in flight run to its end (audited),
then exits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

PIECES = [f"piece {i} of the slow answer. " for i in range(15)]


def slow_upstream() -> FastAPI:
    """Streams an answer in twelve pieces, a fifth of a second apart."""
    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            for piece in PIECES:
                await asyncio.sleep(0.2)
                choice = {"index": 0, "delta": {"content": piece}}
                yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()
            end = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield f"data: {json.dumps({**base, 'choices': [end]})}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    return upstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("grace", [30, 1])
def test_sigterm_lets_a_stream_in_flight_finish_and_refuses_new_connections(
    tmp_path: Path, live_server: type[Any], cli_process: Callable[..., str], grace: int
) -> None:
    """With the default grace the stream runs to its end; with a grace
    shorter than the stream it is cut, and the audit log says so."""
    with live_server(slow_upstream()) as upstream:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            json.dumps(
                {
                    "data_dir": str(tmp_path / "state"),
                    "upstreams": [{"name": "up", "kind": "openai", "base_url": upstream.url}],
                    "routes": [{"model": "slow", "upstreams": ["up"]}],
                    "audit": {"checkpoint_interval_s": 0},
                    "shutdown_grace_s": grace,
                }
            )
        )
        key = json.loads(cli_process("keys", "create", "--config", str(config), "--json"))["key"]
        port = free_port()
        command = "from mantlet.cli.app import main; main()"
        process = subprocess.Popen(
            [sys.executable, "-c", command, "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "gateway exited early"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=1).is_success:
                        break
                assert time.monotonic() < deadline, "gateway did not become ready"
                time.sleep(0.2)

            lines: list[str] = []
            first_data = threading.Event()

            def consume() -> None:
                body = {
                    "model": "slow",
                    "stream": True,
                    "messages": [{"role": "user", "content": "go"}],
                }
                with (
                    contextlib.suppress(httpx.RemoteProtocolError),  # cut by the shutdown
                    httpx.stream(
                        "POST",
                        f"{url}/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {key}"},
                        timeout=30,
                    ) as response,
                ):
                    for line in response.iter_lines():
                        lines.append(line)
                        if line.startswith("data: {"):
                            first_data.set()

            reader = threading.Thread(target=consume)
            reader.start()
            assert first_data.wait(20), "the stream never started"
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the listening socket closes first
            refused = False
            try:
                httpx.get(f"{url}/healthz", timeout=2)
            except httpx.TransportError:
                refused = True
            reader.join(30)
            assert not reader.is_alive()
            # uvicorn re-raises the signal once it has shut down, as
            # service managers expect of a process stopped by SIGTERM.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert refused, "a new connection was accepted after SIGTERM"
    exported = cli_process("audit", "export", "--config", str(config)).splitlines()
    records = [json.loads(line)["record"] for line in exported]
    streamed = [r for r in records if r.get("route") == "/v1/chat/completions"]
    lines = [line for line in lines if line]
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    if grace == 1:  # cut: the caller got part of it, the record says why
        assert text != "".join(PIECES) and lines[-1] != "data: [DONE]"
        assert [(r["status"], r["error"]) for r in streamed] == [(503, "server_shutdown")]
        return
    assert lines[-1] == "data: [DONE]", lines[-3:]  # the stream ran to its end
    assert text == "".join(PIECES)
    assert [r["status"] for r in streamed] == [200]  # audited when it ended
