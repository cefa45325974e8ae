"""Run the student's bpftrace script around workloads whose openat() counts
only this run knows: each workload renames itself (prctl PR_SET_NAME) to a
random name and then makes a random number of openat() calls, some of them
failing on purpose if asked. Shared by check.py and the hidden checks."""

from __future__ import annotations

import json
import os
import random
import signal
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kernellab_check import Fail, kill_group, log, tail

ATTACH_TIMEOUT = 90  # bpftrace compiles with LLVM: slow under TCG
EXIT_TIMEOUT = 30
MAX_OUTPUT = 2 << 20

# The workload: set our own name, then exactly `ok` successful and `bad`
# failing openat() calls (os.open is glibc's open(), i.e. openat(AT_FDCWD, ...)).
WORKLOAD = r"""
import ctypes, os, sys
name, ok, bad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, name.encode(), 0, 0, 0) != 0:
    sys.exit(3)
sys.stdin.readline()  # wait for the go: all workloads start together
for _ in range(ok):
    os.close(os.open("/dev/null", os.O_RDONLY))
for _ in range(bad):
    try:
        os.open("/nonexistent-kernellab/missing", os.O_RDONLY)
    except OSError:
        pass
"""


@dataclass(frozen=True)
class Workload:
    name: str
    ok: int
    bad: int = 0

    @property
    def total(self) -> int:
        return self.ok + self.bad


def random_name(prefix: str = "kl") -> str:
    rng = random.SystemRandom()
    return prefix + "".join(rng.choice(string.ascii_lowercase) for _ in range(7))


def random_count(low: int, high: int) -> int:
    return random.SystemRandom().randint(low, high)


def tolerance(expected: int) -> int:
    return max(2, expected // 20)


@dataclass
class TraceResult:
    attached: int = 0
    maps: dict[str, object] = field(default_factory=dict)  # last printout of each map
    texts: list[str] = field(default_factory=list)  # printf and other non-map output
    stderr: str = ""
    exited: bool = False


def run_trace(script: Path, workloads: list[Workload]) -> TraceResult:
    """Start bpftrace on ``script``, run the workloads once it is attached,
    stop it with SIGINT (as Ctrl-C would) and collect what it printed."""
    result = TraceResult()
    proc = subprocess.Popen(
        ["bpftrace", "-f", "json", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    lines: list[str] = []
    errors: list[bytes] = []
    attached = threading.Event()

    def read_stdout() -> None:
        size = 0
        assert proc.stdout is not None
        for raw in proc.stdout:
            size += len(raw)
            if size > MAX_OUTPUT:
                continue  # keep draining so bpftrace never blocks
            line = raw.decode(errors="replace").strip()
            lines.append(line)
            if '"attached_probes"' in line:
                attached.set()

    def read_stderr() -> None:
        assert proc.stderr is not None
        errors.append(proc.stderr.read(MAX_OUTPUT))
        while proc.stderr.read(65536):
            pass

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.daemon = True
        reader.start()
    try:
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while not attached.is_set() and proc.poll() is None and time.monotonic() < deadline:
            attached.wait(0.2)
        if attached.is_set() and proc.poll() is None:
            time.sleep(0.3)
            _run_workloads(workloads)
            time.sleep(0.3)
        if proc.poll() is None:
            kill_group(proc, signal.SIGINT)
            try:
                proc.wait(EXIT_TIMEOUT)
                result.exited = True
            except subprocess.TimeoutExpired:
                log("bpftrace ignored SIGINT; killing it")
        else:
            result.exited = True
    finally:
        kill_group(proc)
        proc.wait()
        for reader in readers:
            reader.join(5)
    result.stderr = b"".join(errors).decode(errors="replace")
    _parse(lines, result)
    return result


def _run_workloads(workloads: list[Workload]) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKLOAD, w.name, str(w.ok), str(w.bad)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for w in workloads
    ]
    time.sleep(0.5)  # interpreters up and renamed before they start
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        proc.stdin = None  # communicate() below must not touch it again
    for proc, workload in zip(procs, workloads, strict=True):
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"workload {workload.name} failed: {err.decode()[-500:]}")


def _parse(lines: list[str], result: TraceResult) -> None:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            if line:
                result.texts.append(line)
            continue
        if not isinstance(event, dict):
            continue
        kind, data = event.get("type"), event.get("data")
        if kind == "attached_probes" and isinstance(data, dict):
            probes = data.get("probes")
            result.attached = probes if isinstance(probes, int) else 0
        elif kind == "map" and isinstance(data, dict):
            result.maps.update(data)
        elif data is not None:
            result.texts.append(str(data))


def keyed_counts(result: TraceResult) -> dict[str, dict[str, int]]:
    """Maps keyed by a single string, with integer values: name -> {key: count}."""
    found = {}
    for name, value in result.maps.items():
        if isinstance(value, dict):
            counts = {str(k): v for k, v in value.items() if isinstance(v, int)}
            if counts:
                found[name] = counts
    return found


def count_for(result: TraceResult, workload: Workload) -> tuple[str, int] | None:
    """(map name, count) of the map entry for this workload's process name."""
    for name, counts in keyed_counts(result).items():
        if workload.name in counts:
            return name, counts[workload.name]
    return None


def require_started(result: TraceResult) -> None:
    if result.attached < 1:
        detail = tail(result.stderr, 6) or "no output"
        raise Fail(f"bpftrace could not run your script:\n{detail}")


def describe_maps(result: TraceResult) -> str:
    shown = []
    for name, value in list(result.maps.items())[:3]:
        text = json.dumps(value)
        shown.append(f"{name} = {text[:200]}")
    return "; ".join(shown) if shown else "no maps at all"
