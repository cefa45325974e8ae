"""The browser console path vs `virsh console` on the same guest, in one run.

    ./kernellab bench console [--keys 200] [--bytes 300000] [--idle 500]

1. Keystroke-to-echo latency: one character typed at the shell prompt, timed
   until the guest's echo comes back (then a backspace, also timed); through
   `virsh console` on a pty (the baseline) and through the websocket (uvicorn
   + ConsoleConsumer + hub, a real client). p50/p99 and the added ms.
2. Bulk output: N bytes of base64 text (76-character lines, like a build log
   or `cat /dev/urandom | base64`) timed to the end marker, both paths; ratio.
3. Idle consoles: N websocket viewers (the cohort's instructor) held open on
   one web process for 30 s: its CPU (% of one core) and memory.
Uses its own SQLite database and VM folder; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import select
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.support import configure, destroy_all, start_lab, wait_for
from vms.hypervisor.domain import SHELL_CONSOLE

WORK = Path("/var/lib/kernellab/bench-console")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class VirshConsole:
    """`virsh console` on a pty: the baseline a person at a terminal gets."""

    def __init__(self, domain: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [
                "virsh",
                "-c",
                "qemu:///system",
                "console",
                "--force",
                "--devname",
                SHELL_CONSOLE,
                domain,
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.buffer = bytearray()

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait_for(self, needle: bytes, after: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.buffer[after:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{needle!r} not seen; tail {bytes(self.buffer[-200:])!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                self.buffer += os.read(self.master, 65536)

    def close(self) -> None:
        self.type(b"\x1d")  # virsh's escape
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.master)


def bulk_command(size: int, tag: str) -> str:
    """About ``size`` bytes of base64 lines, then an end marker."""
    return f"head -c {size * 3 // 4} /dev/urandom | base64; echo {tag}-$((1+1))\r"


def echo_latencies_virsh(console: VirshConsole, keys: int) -> list[float]:
    samples = []
    for _ in range(keys):
        for key, echo in ((b"a", b"a"), (b"\x7f", b"\x08")):
            mark = len(console.buffer)
            started = time.perf_counter()
            console.type(key)
            console.wait_for(echo, mark, 10)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def throughput_virsh(console: VirshConsole, size: int, tag: str) -> float:
    mark = len(console.buffer)
    started = time.perf_counter()
    console.type(bulk_command(size, tag).encode())
    console.wait_for(f"{tag}-2".encode(), mark, 600)
    return size / (time.perf_counter() - started)


async def echo_latencies_ws(term: object, keys: int) -> list[float]:
    from tests.support.console_client import ConsoleClient

    assert isinstance(term, ConsoleClient)
    samples = []
    for _ in range(keys):
        for key, echo in ((b"a", b"a"), (b"\x7f", b"\x08")):
            mark = len(term.output)
            started = time.perf_counter()
            await term.type(key)
            await term.wait_for(echo, after=mark, timeout=10)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def throughput_ws(term: object, size: int, tag: str) -> float:
    from tests.support.console_client import ConsoleClient

    assert isinstance(term, ConsoleClient)
    mark = len(term.output)
    started = time.perf_counter()
    await term.type(bulk_command(size, tag))
    await term.wait_for(f"{tag}-2".encode(), after=mark, timeout=600)
    return size / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def websocket_part(url: str, server_pid: int, vm: object, args: argparse.Namespace) -> dict:
    from labplatform.accounts.models import User
    from tests.support.console_client import ConsoleClient
    from tests.support.processes import rss_mib

    alice = await User.objects.aget(username="alice")
    teacher = await User.objects.aget(username="teacher")
    term = await ConsoleClient.open(url, vm, alice)  # type: ignore[arg-type]
    mark = len(term.output)
    await term.type("\r")
    await term.wait_for(b"# ", after=mark, timeout=30)
    latencies = await echo_latencies_ws(term, args.keys)
    rate = await throughput_ws(term, args.bytes, "WS")
    await term.close()

    rss_before = rss_mib(server_pid)
    viewers = []
    for _ in range(args.idle):
        viewers.append(await ConsoleClient.open(url, vm, teacher))  # type: ignore[arg-type]
    await asyncio.sleep(5)
    cpu_start, wall_start = cpu_seconds(server_pid), time.monotonic()
    await asyncio.sleep(30)
    cpu = (cpu_seconds(server_pid) - cpu_start) / (time.monotonic() - wall_start)
    rss_after = rss_mib(server_pid)
    for viewer in viewers:
        await viewer.close()
    return {
        "latencies": latencies,
        "rate": rate,
        "idle_cpu": cpu,
        "rss_before": rss_before,
        "rss_after": rss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--bytes", type=int, default=1_000_000)
    parser.add_argument("--idle", type=int, default=500)
    args = parser.parse_args()
    configure(WORK)
    from django.test import Client

    from tests.support.processes import asgi_server_process, celery_worker
    from vms import lifecycle
    from vms.images import ensure_image

    ensure_image(progress=print)
    client = Client()
    client.login(username="alice", password="bench")
    env = {"VM_POOL_SIZE": "0", "VIRT_TYPE": "qemu", "VM_DIR": str(WORK / "vms")}
    try:
        with celery_worker(WORK, "host.local", **env):
            vm = start_lab(client)
            wait_for(lifecycle.vm_files(vm).shell_log, f"root@{vm.hostname}".encode())
            vm.refresh_from_db()
            print(f"guest {vm.hostname} up; platform: websocket")
            logs = Path("/tmp/kernellab-bench-console-logs")
            logs.mkdir(exist_ok=True)
            with asgi_server_process(logs, **env) as (url, server):
                ws = asyncio.run(websocket_part(url, server.popen.pid, vm, args))
            print("baseline: virsh console")
            virsh = VirshConsole(vm.domain_name)
            virsh.wait_for(b"Escape character", 0, 30)  # raw mode set; input no longer flushed
            virsh.type(b"\r")
            virsh.wait_for(b"# ", 0, 30)
            base_lat = echo_latencies_virsh(virsh, args.keys)
            base_rate = throughput_virsh(virsh, args.bytes, "VIRSH")
            virsh.close()
    finally:
        destroy_all(WORK)

    def row(name: str, values: list[float]) -> str:
        return f"{name:<22}{statistics.median(values):>9.2f}{percentile(values, 0.99):>9.2f}"

    print(f"\nkeystroke echo, ms      {'p50':>7}{'p99':>9}   ({2 * args.keys} keys each)")
    print(row("virsh console (pty)", base_lat))
    print(row("websocket (browser)", ws["latencies"]))
    added50 = statistics.median(ws["latencies"]) - statistics.median(base_lat)
    added99 = percentile(ws["latencies"], 0.99) - percentile(base_lat, 0.99)
    print(f"{'added':<22}{added50:>9.2f}{added99:>9.2f}")
    print(f"\nbulk output ({args.bytes} B)   KB/s")
    print(f"{'virsh console (pty)':<22}{base_rate / 1000:>9.1f}")
    print(f"{'websocket (browser)':<22}{ws['rate'] / 1000:>9.1f}")
    print(f"{'ratio':<22}{ws['rate'] / base_rate:>9.2f}")
    print(f"\n{args.idle} idle consoles on one web process (30 s)")
    print(f"{'CPU, % of one core':<22}{100 * ws['idle_cpu']:>9.2f}")
    print(f"{'RSS before/after MiB':<22}{ws['rss_before']:>9.0f}{ws['rss_after']:>9.0f}")


if __name__ == "__main__":
    main()
