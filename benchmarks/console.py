"""The browser console path vs `virsh console` on the same guest, in one run.

    ./kernellab bench console [--keys 200] [--bytes 1000000] [--rounds 5] [--idle 500]

1. Keystroke-to-echo latency: one character typed at the shell prompt, timed
   until the guest's echo comes back (then a backspace, also timed); through
   `virsh console` on a pty (the baseline) and through the websocket (uvicorn
   + ConsoleConsumer + hub, a real client). p50/p99 and the added ms.
2. Bulk output: N bytes of base64 text (76-character lines, like a build log
   or `cat /dev/urandom | base64`) timed to the end marker, in alternating
   rounds, through both paths and through the libvirt stream alone (no hub,
   no websocket: where the relay's cost lies); ratio of the medians, and the
   CPU of each process on the path and the host's idle time meanwhile.
3. Idle consoles: N websocket viewers (the cohort's instructor) held open on
   one web process for 30 s: its CPU (% of one core) and memory.
Uses its own SQLite database and VM folder; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import re
import select
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.support import configure, destroy_all, start_lab, wait_for
from vms.hypervisor.domain import SHELL_CONSOLE

WORK = Path("/var/lib/kernellab/bench-console")


@dataclass(frozen=True)
class Bulk:
    rate: float  # bytes per second, as the reader saw them
    guest_seconds: float  # how long the guest took to write them


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
        start = after
        while self.buffer.find(needle, start) < 0:
            start = max(after, len(self.buffer) - len(needle) + 1)
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
    """About ``size`` bytes of base64 lines, then an end marker that carries
    the milliseconds the guest itself took to write them: if the relay slows
    the guest down, it shows there, not only at the reader."""
    return (
        f"S=$(date +%s%N); head -c {size * 3 // 4} /dev/urandom | base64; "
        f"echo {tag}-$((1+1)) $((($(date +%s%N)-S)/1000000))ms-$((6*7))\r"
    )


def guest_seconds(output: bytes, tag: str) -> float:
    found = re.search(rb"%s-2 (\d+)ms-42" % tag.encode(), output)
    assert found, f"no end marker for {tag}"
    return int(found.group(1)) / 1000


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


def throughput_virsh(console: VirshConsole, size: int, tag: str) -> Bulk:
    mark = len(console.buffer)
    started = time.perf_counter()
    console.type(bulk_command(size, tag).encode())
    console.wait_for(f"{tag}-2 ".encode(), mark, 600)
    elapsed = time.perf_counter() - started
    console.wait_for(b"ms-42", mark, 10)  # the echoed command line has "ms-$((6*7))"
    return Bulk(size / elapsed, guest_seconds(bytes(console.buffer[mark:]), tag))


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


async def throughput_ws(term: object, size: int, tag: str) -> Bulk:
    from tests.support.console_client import ConsoleClient

    assert isinstance(term, ConsoleClient)
    mark = len(term.output)
    started = time.perf_counter()
    await term.type(bulk_command(size, tag))
    await term.wait_for(f"{tag}-2 ".encode(), after=mark, timeout=600)
    elapsed = time.perf_counter() - started
    await term.wait_for(b"ms-42", after=mark, timeout=10)
    return Bulk(size / elapsed, guest_seconds(bytes(term.output[mark:]), tag))


async def _until_in(buf: bytearray, needle: bytes, seconds: float) -> None:
    """Poll ``buf`` (filled by a stream callback) until it holds ``needle``."""
    deadline = time.monotonic() + seconds
    while needle not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{needle!r} not seen; tail {bytes(buf[-200:])!r}")
        await asyncio.sleep(0.1)


async def throughput_raw(vm: object, size: int, tag: str) -> Bulk:
    """The libvirt stream alone (vms.hypervisor.console.ConsoleStream, no hub,
    no websocket), read in this process."""
    from vms.hypervisor.console import ConsoleStream
    from vms.hypervisor.host import Host

    loop = asyncio.get_running_loop()
    buf = bytearray()
    done = asyncio.Event()
    needle = f"{tag}-2 ".encode()

    def on_data(data: bytes) -> None:
        buf.extend(data)
        if buf.find(needle, max(0, len(buf) - len(data) - len(needle))) >= 0:
            done.set()

    host = Host("qemu:///system")
    stream = ConsoleStream(
        host,
        str(vm.domain_uuid),  # type: ignore[attr-defined]
        SHELL_CONSOLE,
        loop=loop,
        on_data=on_data,
        on_closed=lambda info: None,
    )
    await stream.open()
    try:
        stream.write(ready_command(tag).encode())
        await _until_in(buf, f"{tag}-42".encode(), 30)  # as in ws_open: a live console first
        started = time.perf_counter()
        stream.write(bulk_command(size, tag).encode())
        await asyncio.wait_for(done.wait(), 600)  # the timed wait: no polling delay
        elapsed = time.perf_counter() - started
        await _until_in(buf, b"ms-42", 10)
        return Bulk(size / elapsed, guest_seconds(bytes(buf), tag))
    finally:
        stream.close()
        host.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by each of the processes on the path, over a phase (% of one
    core): where the two host cores go while the guest streams its output."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.stat = host_stat()
        self.wall = time.monotonic()

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        out = {
            name: 100 * (cpu_seconds(pid) - self.start[name]) / wall
            for name, pid in self.pids.items()
        }
        delta = [now - then for then, now in zip(self.stat, host_stat(), strict=True)]
        idle = delta[3] + delta[4]  # idle + iowait
        out["host idle"] = 100 * (os.cpu_count() or 1) * idle / sum(delta)
        return out


def host_stat() -> list[int]:
    """The host's CPU time counters (the "cpu" line of /proc/stat)."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def pid_of(pattern: str) -> int:
    out = subprocess.run(["pgrep", "-o", "-f", pattern], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def ready_command(tag: str) -> str:
    """A command whose output (``<tag>-42``) cannot come from the scrollback."""
    return f"echo {tag}-$((6*7))\r"


async def ws_open(url: str, vm: object, user: object, tag: str) -> object:
    """A websocket console on which the guest has answered a command: qemu
    notices a new reader of a console pty up to a second late, and the
    scrollback's old prompts prove nothing, so the clock starts only here."""
    from tests.support.console_client import ConsoleClient

    term = await ConsoleClient.open(url, vm, user)  # type: ignore[arg-type]
    await term.type(ready_command(tag))
    await term.wait_for(f"{tag}-42".encode(), timeout=30)
    return term


def virsh_open(domain: str) -> VirshConsole:
    virsh = VirshConsole(domain)
    virsh.wait_for(b"Escape character", 0, 30)  # raw mode set; input no longer flushed
    mark = len(virsh.buffer)
    for attempt in range(15):
        virsh.type(b"\r")
        try:
            virsh.wait_for(b"# ", mark, 2)
        except TimeoutError:
            print(f"virsh console: no prompt yet (try {attempt + 1})")
            continue
        return virsh
    raise TimeoutError(f"virsh console: no prompt; got {bytes(virsh.buffer[-300:])!r}")


async def measure(url: str, server_pid: int, vm: object, args: argparse.Namespace) -> dict:
    """Latency on each path, then bulk output in alternating rounds (websocket,
    libvirt stream alone, virsh, websocket, ...) so that no path gets the
    quieter guest."""
    from labplatform.accounts.models import User

    alice = await User.objects.aget(username="alice")
    pids = {
        "qemu": pid_of(f"qemu-system.*{vm.domain_name}"),  # type: ignore[attr-defined]
        "libvirtd": pid_of("libvirtd"),
        "uvicorn": server_pid,
        "client": os.getpid(),
    }
    results: dict = {
        "rates": {"ws": [], "raw": [], "virsh": []},
        "cpu": {"ws": [], "raw": [], "virsh": []},
    }

    opened = time.perf_counter()
    term = await ws_open(url, vm, alice, "OPEN")
    results["ws_open_seconds"] = time.perf_counter() - opened
    results["ws_latencies"] = await echo_latencies_ws(term, args.keys)
    await term.close()  # type: ignore[attr-defined]
    virsh = virsh_open(vm.domain_name)  # type: ignore[attr-defined]
    results["virsh_latencies"] = echo_latencies_virsh(virsh, args.keys)
    virsh.close()

    for round_ in range(args.rounds):
        term = await ws_open(url, vm, alice, f"WSREADY{round_}")
        meter = CpuMeter(pids)
        results["rates"]["ws"].append(await throughput_ws(term, args.bytes, f"WS{round_}"))
        results["cpu"]["ws"].append(meter.read())
        await term.close()  # type: ignore[attr-defined]

        meter = CpuMeter(pids)
        results["rates"]["raw"].append(await throughput_raw(vm, args.bytes, f"RAW{round_}"))
        results["cpu"]["raw"].append(meter.read())

        virsh = virsh_open(vm.domain_name)  # type: ignore[attr-defined]
        meter = CpuMeter({**pids, "virsh": virsh.proc.pid})
        results["rates"]["virsh"].append(throughput_virsh(virsh, args.bytes, f"VIRSH{round_}"))
        results["cpu"]["virsh"].append(meter.read())
        virsh.close()

    results.update(await idle_viewers(url, server_pid, vm, args.idle))
    return results


async def idle_viewers(url: str, server_pid: int, vm: object, count: int) -> dict:
    from labplatform.accounts.models import User
    from tests.support.console_client import ConsoleClient
    from tests.support.processes import rss_mib

    teacher = await User.objects.aget(username="teacher")
    rss_before = rss_mib(server_pid)
    viewers = []
    for _ in range(count):
        viewers.append(await ConsoleClient.open(url, vm, teacher))  # type: ignore[arg-type]
    await asyncio.sleep(5)
    cpu_start, wall_start = cpu_seconds(server_pid), time.monotonic()
    await asyncio.sleep(30)
    cpu = (cpu_seconds(server_pid) - cpu_start) / (time.monotonic() - wall_start)
    rss_after = rss_mib(server_pid)
    for viewer in viewers:
        await viewer.close()
    return {"idle_cpu": cpu, "rss_before": rss_before, "rss_after": rss_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--bytes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=500)
    args = parser.parse_args()
    configure(WORK)
    from django.test import Client

    from labplatform.accounts.models import User
    from tests.support.processes import asgi_server_process, host_worker
    from vms import lifecycle
    from vms.images import ensure_image

    ensure_image(progress=print)
    client = Client()
    client.force_login(User.objects.get(username="alice"))  # axes wants a request for login()
    env = {"VM_POOL_SIZE": "0", "VIRT_TYPE": "qemu", "VM_DIR": str(WORK / "vms")}
    try:
        with host_worker(WORK, "local", **env):
            vm = start_lab(client)
            wait_for(lifecycle.vm_files(vm).shell_log, f"root@{vm.hostname}".encode())
            vm.refresh_from_db()
            print(f"guest {vm.hostname} up")
            logs = Path("/tmp/kernellab-bench-console-logs")
            logs.mkdir(exist_ok=True)
            # The idle round opens args.idle watchers of one VM: lift the per-VM cap.
            watchers = {"CONSOLE_RO_SESSIONS_PER_VM": str(args.idle + 8)}
            with asgi_server_process(logs, **env, **watchers) as (url, server):
                res = asyncio.run(measure(url, server.popen.pid, vm, args))
    finally:
        destroy_all(WORK)

    def row(name: str, values: list[float]) -> str:
        return f"{name:<22}{statistics.median(values):>9.2f}{percentile(values, 0.99):>9.2f}"

    ws_lat, base_lat = res["ws_latencies"], res["virsh_latencies"]
    print(f"\nkeystroke echo, ms      {'p50':>7}{'p99':>9}   ({2 * args.keys} keys each)")
    print(row("virsh console (pty)", base_lat))
    print(row("websocket (browser)", ws_lat))
    added50 = statistics.median(ws_lat) - statistics.median(base_lat)
    added99 = percentile(ws_lat, 0.99) - percentile(base_lat, 0.99)
    print(f"{'added':<22}{added50:>9.2f}{added99:>9.2f}")
    print(f"websocket opened to a first answer: {res['ws_open_seconds']:.2f} s")

    bulk = res["rates"]
    rates = {key: [b.rate for b in runs] for key, runs in bulk.items()}
    print(f"\nbulk output ({args.bytes} B, {args.rounds} alternating rounds), KB/s: median [each]")
    for name, key in (
        ("virsh console (pty)", "virsh"),
        ("libvirt stream (py)", "raw"),
        ("websocket (browser)", "ws"),
    ):
        each = " ".join(f"{r / 1000:.1f}" for r in rates[key])
        print(f"{name:<22}{statistics.median(rates[key]) / 1000:>9.1f}   [{each}]")
    print("guest's own time to write it, s: median [each]")
    for key in ("virsh", "raw", "ws"):
        times = [b.guest_seconds for b in bulk[key]]
        each = " ".join(f"{t:.2f}" for t in times)
        print(f"  {key:<20}{statistics.median(times):>9.2f}   [{each}]")
    ratio = statistics.median(rates["ws"]) / statistics.median(rates["virsh"])
    print(f"{'ratio':<22}{ratio:>9.2f}")
    print("CPU during bulk output, % of one core (median of rounds)")
    for key in ("virsh", "raw", "ws"):
        names = res["cpu"][key][0].keys()
        split = ", ".join(
            f"{n} {statistics.median(c[n] for c in res['cpu'][key]):.0f}" for n in names
        )
        print(f"  {key:<6}{split}")

    print(f"\n{args.idle} idle consoles on one web process (30 s)")
    print(f"{'CPU, % of one core':<22}{100 * res['idle_cpu']:>9.2f}")
    print(f"{'RSS before/after MiB':<22}{res['rss_before']:>9.0f}{res['rss_after']:>9.0f}")


if __name__ == "__main__":
    main()
