"""Gateway overhead: requests/s and p50/p95/p99 latency at concurrency 1, 16
and 64 for (a) a fast fake upstream called directly, (b) the same upstream
through Mantlet (API-key auth, rate limits, the balanced profile's input and
output detectors), and (c) through the LiteLLM proxy with a master key, when
`--litellm` is given (installed into its own venv under .mantlet/bench/).

Every server runs in its own process on loopback; the load generator is an
asyncio httpx client. On a 2-core machine the client, the gateway and the
upstream share the CPUs, so absolute figures are pessimistic; compare rows.

    python bench/gateway_overhead.py [--requests 400] [--litellm] [--json]
    python bench/gateway_overhead.py --serial --upstream-delay-ms 50 --prompt-chars 2000

``--serial`` adds a second Mantlet with ``overlap_flag_only: false``: the
flag-only injection model then runs before the upstream call instead of
alongside it. ``--floor`` adds a bare pass-through proxy (uvicorn, one pooled
httpx client, no auth, limits, detectors or audit): what a Python proxy hop
alone adds on this machine, a lower bound for any gateway written like this
one. ``--baseline SRC`` adds a Mantlet run from another checkout's ``src``
(on ``PYTHONPATH``); with ``--paired N`` the two then answer N sequential
requests each, alternating, and the median of the per-pair differences is
printed: slow drifts of a shared machine cancel out of it.
``--upstream-delay-ms`` makes the fake upstream take that long to answer, as
a real model does; ``--prompt-chars`` pads the user message with benign
prose (a pasted document, say) to that length. ``--responses`` also sends
the same requests to the first Mantlet's ``/v1/responses``.

"+p50"/"+p99" are the latency added over calling the upstream directly at the
same concurrency; "srv" is Mantlet's own x-mantlet-overhead-ms header (time
spent in the gateway minus time waiting for the upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SYSTEM = "You are a helpful assistant for the operations team. Answer briefly and politely."
PROMPT = "Please summarise the attached meeting notes in three short bullet points for the team."
UPSTREAM_APP = """
import asyncio, json, os
DELAY = float(os.environ.get("BENCH_UPSTREAM_DELAY_MS", "0")) / 1000
BODY = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant",
    "content": "Here are three bullet points about the meeting."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if DELAY:
        await asyncio.sleep(DELAY)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
"""
# A proxy that does nothing but forward (the --floor target).
FLOOR_APP = """
import os, httpx
UPSTREAM = os.environ["BENCH_UPSTREAM"]
client = None
async def app(scope, receive, send):
    global client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                client = httpx.AsyncClient(base_url=UPSTREAM)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = await client.post("/chat/completions", content=body,
                               headers={"content-type": "application/json"})
    await send({"type": "http.response.start", "status": answer.status_code,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer.content})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


FILLER = (
    "The quarterly review covered staffing, the migration of the billing service, and the"
    " schedule for the next release. Attendance was good and the discussion stayed on topic."
    " Several action items were assigned, with owners and dates recorded in the tracker."
)


def padded(prompt: str, chars: int) -> str:
    """The prompt after benign prose, ``chars`` characters in all (at least the prompt)."""
    room = chars - len(prompt) - 1
    if room <= 0:
        return prompt
    filler = (FILLER + " ") * (room // (len(FILLER) + 1) + 1)
    return filler[:room].rstrip() + " " + prompt


async def load(
    url: str, key: str | None, concurrency: int, total: int, prompt_chars: int = 0
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # A fixed system prompt and a different user message on every request, as
    # in real traffic: caches may help with the first, never with the second.
    nonce = time.time_ns()

    def body(i: int) -> dict[str, Any]:
        prompt = padded(f"{PROMPT} Reference {nonce}-{i}.", prompt_chars)
        if url.endswith("/responses"):  # the same request in the Responses API's shape
            return {"model": "bench", "instructions": SYSTEM, "input": prompt}
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        return {"model": "bench", "messages": messages}

    latencies: list[float] = []
    server_overhead: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        queue = iter(range(total))

        async def worker() -> None:
            nonlocal errors
            for i in queue:
                started = time.perf_counter()
                response = await client.post(url, json=body(i), headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200
                if "x-mantlet-overhead-ms" in response.headers:
                    server_overhead.append(float(response.headers["x-mantlet-overhead-ms"]))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    figures = {
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
        "errors": errors,
    }
    if server_overhead:  # what Mantlet itself reports (x-mantlet-overhead-ms)
        figures["server_overhead_p50_ms"] = pct(server_overhead, 50)
        figures["server_overhead_p99_ms"] = pct(server_overhead, 99)
    return figures


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_asgi(
    work: Path, module: str, source: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """``source`` as ``module`` on uvicorn, ready; returns (process, base URL)."""
    (work / f"{module}.py").write_text(source)
    port = free_port()
    command = ["-m", "uvicorn", f"{module}:app", "--port", str(port), "--log-level", "error"]
    process = start([str(BIN / "python"), *command, "--app-dir", str(work)], env)
    wait_ready(f"http://127.0.0.1:{port}/")
    return process, f"http://127.0.0.1:{port}"


def start_mantlet(
    folder: Path, upstream: str, overrides: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """A gateway on its own state folder; returns (process, URL, API key).
    ``env`` (``PYTHONPATH`` for ``--baseline``) applies to the key and the server."""
    folder.mkdir(parents=True)
    config = folder / "gateway.yaml"
    settings = {
        "upstreams": [{"name": "fake", "kind": "openai", "base_url": upstream, "retries": 0}],
        "routes": [{"model": "bench", "upstreams": ["fake"]}],
        "quotas": {"requests_per_key": "1000000/minute"},
        **overrides,
    }
    config.write_text(json.dumps(settings))
    data = folder / "state"
    created = subprocess.run(
        [str(BIN / "mantlet"), "keys", "create", "--data-dir", str(data), "--json"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    port = free_port()
    command = ["serve", "--config", str(config), "--data-dir", str(data), "--port", str(port)]
    process = start([str(BIN / "mantlet"), *command], env)
    wait_ready(f"http://127.0.0.1:{port}/healthz")
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return process, url, json.loads(created.stdout)["key"]


async def paired(targets: dict[str, tuple[str, str | None]], pairs: int) -> dict[str, list[float]]:
    """Sequential requests, each pair sent to every target in turn (the
    order flipping every pair); returns each target's latencies."""
    names = list(targets)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    nonce = time.time_ns()
    async with httpx.AsyncClient(timeout=60.0) as client:
        for i in range(pairs):
            prompt = f"{PROMPT} Reference {nonce}-{i}."
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
            for name in names if i % 2 == 0 else names[::-1]:
                url, key = targets[name]
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                started = time.perf_counter()
                response = await client.post(
                    url, json={"model": "bench", "messages": messages}, headers=headers
                )
                latencies[name].append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{name} answered HTTP {response.status_code}")
    return latencies


def litellm_python(base: Path) -> Path:
    folder = base / "litellm-venv"
    python = folder / "bin" / "python"
    if not python.exists():
        venv.create(folder, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "litellm[proxy]"], check=True
        )
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--litellm", action="store_true", help="also measure the LiteLLM proxy")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--serial", action="store_true", help="also a Mantlet with overlap_flag_only: false"
    )
    parser.add_argument(
        "--responses", action="store_true", help="also Mantlet's /v1/responses, same requests"
    )
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0)
    parser.add_argument("--prompt-chars", type=int, default=0)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16, 64], help="levels to measure"
    )
    parser.add_argument("--floor", action="store_true", help="also a bare pass-through proxy")
    parser.add_argument(
        "--baseline", type=Path, help="also a Mantlet from this src folder (an older checkout)"
    )
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="with --baseline: N alternating request pairs, median difference",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mantlet-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        delay = {"BENCH_UPSTREAM_DELAY_MS": str(args.upstream_delay_ms)}
        process, up_base = start_asgi(work, "fake_upstream", UPSTREAM_APP, delay)
        processes.append(process)
        upstream = f"{up_base}/v1"

        targets: dict[str, tuple[str, str | None]] = {
            "direct": (f"{upstream}/chat/completions", None)
        }
        variants = {"mantlet": {}}
        if args.serial:
            variants["serial"] = {"overlap_flag_only": False}
        if args.floor:
            forward_to = {"BENCH_UPSTREAM": upstream}
            process, floor = start_asgi(work, "floor_proxy", FLOOR_APP, forward_to)
            processes.append(process)
            targets["floor"] = (f"{floor}/v1/chat/completions", None)
        environments: dict[str, dict[str, str] | None] = {"mantlet": None}
        if args.baseline:
            variants["baseline"] = {}
            environments["baseline"] = {"PYTHONPATH": str(args.baseline.resolve())}
        for name, overrides in variants.items():
            process, url, key = start_mantlet(
                work / name, upstream, overrides, environments.get(name)
            )
            processes.append(process)
            targets[name] = (url, key)
            if name == "mantlet" and args.responses:  # same gateway, /v1/responses
                targets["responses"] = (url.replace("/chat/completions", "/responses"), key)
        if args.litellm:
            python = litellm_python(ROOT / ".mantlet" / "bench")
            lite_config = work / "litellm.yaml"
            lite_config.write_text(
                json.dumps(
                    {
                        "model_list": [
                            {
                                "model_name": "bench",
                                "litellm_params": {
                                    "model": "openai/bench",
                                    "api_base": upstream,
                                    "api_key": "none",
                                },
                            }
                        ],
                        "general_settings": {"master_key": "sk-bench-master"},
                    }
                )
            )
            lite_port = free_port()
            processes.append(
                start(
                    [
                        str(python.parent / "litellm"),
                        "--config",
                        str(lite_config),
                        "--port",
                        str(lite_port),
                        "--num_workers",
                        "1",
                    ],
                    # The cost map is fetched from GitHub unless told otherwise.
                    env={"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                )
            )
            wait_ready(f"http://127.0.0.1:{lite_port}/health/liveliness", timeout=180)
            targets["litellm"] = (
                f"http://127.0.0.1:{lite_port}/v1/chat/completions",
                "sk-bench-master",
            )

        if args.baseline and args.paired:
            pair = {name: targets[name] for name in ("baseline", "mantlet")}
            asyncio.run(paired(pair, 100))  # warm up
            others = {name: targets[name] for name in ("direct", "floor") if name in targets}
            latencies = asyncio.run(paired({**others, **pair}, args.paired))
            return _print_paired(latencies, args.json)
        report: dict[str, dict[str, Any]] = {}
        for name, (url, credential) in targets.items():
            asyncio.run(load(url, credential, 4, 40, args.prompt_chars))  # warm up
            report[name] = {
                str(c): asyncio.run(load(url, credential, c, args.requests, args.prompt_chars))
                for c in args.concurrency
            }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)

    direct = report["direct"]
    for name, rows in report.items():
        if name == "direct":
            continue
        for concurrency, row in rows.items():  # latency added over the direct call
            row["added_p50_ms"] = row["p50_ms"] - direct[concurrency]["p50_ms"]
            row["added_p99_ms"] = row["p99_ms"] - direct[concurrency]["p99_ms"]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{'target':10s} {'conc':>5s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'p99 ms':>8s} {'+p50':>7s} {'+p99':>7s} {'srv p50':>8s} {'srv p99':>8s} {'errors':>6s}"
    )
    for name, rows in report.items():
        for concurrency, row in rows.items():
            extra = "".join(
                f" {row[k]:7.2f}" if k in row else f" {'':7s}"
                for k in ("added_p50_ms", "added_p99_ms")
            ) + "".join(
                f" {row[k]:8.2f}" if k in row else f" {'':8s}"
                for k in ("server_overhead_p50_ms", "server_overhead_p99_ms")
            )
            print(
                f"{name:10s} {concurrency:>5s} {row['rps']:8.1f} {row['p50_ms']:8.2f} "
                f"{row['p95_ms']:8.2f} {row['p99_ms']:8.2f}{extra} {row['errors']:6.0f}"
            )
    return 0


def _print_paired(latencies: dict[str, list[float]], as_json: bool) -> int:
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    differences = [
        new - old for old, new in zip(latencies["baseline"], latencies["mantlet"], strict=True)
    ]
    figures = {
        name: {"p50_ms": pct(values, 50), "p95_ms": pct(values, 95), "p99_ms": pct(values, 99)}
        for name, values in latencies.items()
    }
    for name in figures.keys() - {"direct"}:
        figures[name]["added_p50_ms"] = figures[name]["p50_ms"] - figures["direct"]["p50_ms"]
        figures[name]["added_p99_ms"] = figures[name]["p99_ms"] - figures["direct"]["p99_ms"]
    summary = {
        "pairs": len(differences),
        "targets": figures,
        "mantlet_minus_baseline_median_ms": statistics.median(differences),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'target':10s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'+p50':>7s} {'+p99':>7s}")
    for name, row in figures.items():
        added = "".join(
            f" {row[k]:7.2f}" if k in row else f" {'':7s}" for k in ("added_p50_ms", "added_p99_ms")
        )
        print(f"{name:10s} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} {row['p99_ms']:8.2f}{added}")
    median = summary["mantlet_minus_baseline_median_ms"]
    print(f"mantlet - baseline, median of {len(differences)} pairs: {median:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
