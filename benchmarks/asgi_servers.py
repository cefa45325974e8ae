"""Which ASGI server should serve KernelLab? uvicorn vs daphne, measured.

    ./kernellab bench asgi_servers [--seconds 5]

Each server runs the real project (labplatform.asgi) plus one benchmark-only
websocket echo route, on loopback. Printed per server: HTTP requests/s and
p50/p99 latency of GET /healthz (a Django view hitting the database) with 8
keep-alive clients; websocket round-trip p50/p99 of 1-byte frames (a
keystroke); server CPU seconds and RSS. Then the ratios uvicorn/daphne.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def bench_app() -> object:
    """The ASGI app the servers load: the project, plus /bench/echo."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labplatform.settings")
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    from labplatform.asgi import django_asgi_app

    class Echo(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data, bytes_data=bytes_data)

    return ProtocolTypeRouter(
        {"http": django_asgi_app, "websocket": URLRouter([path("bench/echo", Echo.as_asgi())])}
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_argv(name: str, port: int) -> list[str]:
    app = "benchmarks.asgi_servers:bench_app"
    if name == "uvicorn":
        return [
            str(BIN / "uvicorn"),
            "--factory",
            app,
            "--port",
            str(port),
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--ws",
            "websockets-sansio",
            "--log-level",
            "warning",
        ]
    return [
        str(BIN / "python"),
        "-c",
        "import sys; from benchmarks.asgi_servers import bench_app; "
        "from daphne.cli import CommandLineInterface; sys.argv=['daphne']; "
        f"CommandLineInterface().run(['-p', '{port}', '-v', '0', 'benchmarks.asgi_servers:APP'])",
    ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def http_load(port: int, seconds: float, clients: int = 8) -> tuple[float, list[float]]:
    latencies: list[float] = []
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    deadline = time.monotonic() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    h.split(b":")[1]
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                )
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
        writer.close()

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies) / (time.monotonic() - start), latencies


async def ws_echo(port: int, rounds: int = 2000) -> list[float]:
    import websockets

    latencies = []
    from websockets.typing import Origin

    async with websockets.connect(
        f"ws://127.0.0.1:{port}/bench/echo", origin=Origin("http://localhost")
    ) as ws:
        for _ in range(rounds):
            start = time.perf_counter()
            await ws.send(b"x")
            await ws.recv()
            latencies.append(time.perf_counter() - start)
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def measure(name: str, seconds: float) -> dict[str, float]:
    port = free_port()
    env = dict(os.environ, LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(server_argv(name, port), cwd=ROOT, env=env, start_new_session=True)
    try:
        for _ in range(300):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        asyncio.run(http_load(port, 1))  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        rps, http_lat = asyncio.run(http_load(port, seconds))
        cpu1 = cpu_seconds(proc.pid)
        ws_lat = asyncio.run(ws_echo(port))
        cpu2 = cpu_seconds(proc.pid)
        return {
            "http req/s": rps,
            "http p50 ms": pct(http_lat, 50),
            "http p99 ms": pct(http_lat, 99),
            "http cpu s": cpu1 - cpu0,
            "ws p50 ms": pct(ws_lat, 50),
            "ws p99 ms": pct(ws_lat, 99),
            "ws cpu s": cpu2 - cpu1,
            "rss MiB": rss_mib(proc.pid),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    results = {name: measure(name, args.seconds) for name in ("uvicorn", "daphne")}
    print(f"{'metric':<14}{'uvicorn':>12}{'daphne':>12}{'uvicorn/daphne':>16}")
    for metric in results["uvicorn"]:
        u, d = results["uvicorn"][metric], results["daphne"][metric]
        print(f"{metric:<14}{u:>12.2f}{d:>12.2f}{u / d if d else float('nan'):>16.2f}")


def __getattr__(name: str) -> object:
    # daphne takes an application object, not a factory: build it on first use.
    if name == "APP":
        return bench_app()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
