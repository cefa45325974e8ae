"""Run the student's bpftrace script around workloads that only this run
knows. Shared by check.py and the hidden checks.

A workload is a process that renames itself (prctl PR_SET_NAME) to a random
name and then makes a known number of openat() calls on files of a freshly
made folder with a random name, in a random place, by absolute and by
relative path (openat with a directory descriptor), some of them failing if
asked, mixed with stat() and access() calls on the same paths that are not
openat(). Nothing about a run is in an argv, an environment or a file: the
workload gets its orders on a pipe. Names have no fixed prefix, so a script
that "recognises the checker" by a name or a path has nothing to go on, and
the feedback never repeats a name or a path.

bpftrace only runs as root (0.17 refuses anyone else), so the script is
data that the host's validator (exercises/artifacts/validators/bpftrace.py)
read before Submit; here it runs by absolute path, without --unsafe, with a
clean environment, in a fresh root-only folder holding only its copy, with
time limits and an output cap, and every process it leaves is killed.

Timing, which bpftrace 0.17 makes subtle (src/bpftrace.cpp, src/main.cpp):
- "Attaching N probes..." is printed *before* the probes are attached (maps,
  BEGIN, loading through the verifier, attaching come after). A workload
  started on that line can run before the probes exist.
- A SIGINT that arrives before bpftrace's poll loop is waiting is lost: the
  handler only sets a flag, which the loop reads when epoll_wait is
  interrupted, so bpftrace then runs until it is killed and prints nothing.
That was the false "did not stop on Ctrl-C" failure of a correct script
(the first checker started its workload on "Attaching..." and sent SIGINT
about two seconds later: 1 run in 20 lost it, in an idle guest).
So the checker waits for the line bpftrace writes to stderr once every probe
is attached (__BPFTRACE_NOTIFY_PROBES_ATTACHED, printed just before the poll
loop: a SIGINT sent the moment it appears was still lost in 1 of 2 tries, half
a second later never), starts the workloads then, and after the SIGINT
(Ctrl-C) nudges with SIGTERM until bpftrace prints or exits: bpftrace handles
SIGTERM the same way and, unlike SIGINT, never resets it to the default.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import string
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kernellab_check import Fail, kill_group, log, tail

BPFTRACE = "/usr/bin/bpftrace"
PYTHON = "/usr/bin/python3"
ATTACH_TIMEOUT = 150  # bpftrace compiles with LLVM: slow under TCG, slower under load
WORKLOAD_TIMEOUT = 90
EXIT_TIMEOUT = 30
NUDGE_EVERY = 2.0
MAX_OUTPUT = 2 << 20  # stdout bytes kept (maps are printed last)
MAX_STDERR = 64 << 10
MAX_PROBES = 64
ATTACHED = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"
BPFTRACE_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C",
    "LC_ALL": "C",
    "BPFTRACE_MAX_PROBES": str(MAX_PROBES),
    ATTACHED: "1",
}
# Names the first checker used ("kl", "wk", "job" + letters): never again,
# so that a script written against them finds nothing.
RETIRED_PREFIXES = ("kl", "wk", "job")
NAME_FIRST = string.ascii_lowercase
NAME_REST = string.ascii_lowercase + string.digits + "_-."
# Where a workload's folder may be made (a fresh, root-only folder with a
# random name of a random length: no shape to match).
PLACES = (
    "/tmp",  # noqa: S108
    "/var/tmp",  # noqa: S108
    "/run",
    "/dev/shm",  # noqa: S108
    "/srv",
    "/opt",
    "/mnt",
    "/var/cache",
    "/var/lib",
    "/var/local",
)

# The workload. Its orders come on stdin as one JSON line (so nothing about
# it is in its argv or environment), then it renames itself, says "ready",
# and waits for "go". Between the rename and its exit it makes no openat()
# other than the ones it was told to (every module is imported before).
WORKLOAD = r"""
import ctypes, json, os, sys
orders = json.loads(sys.stdin.readline())
libc = ctypes.CDLL(None, use_errno=True)
folder = os.open(orders["folder"], os.O_RDONLY | os.O_DIRECTORY)
if libc.prctl(15, orders["name"].encode(), 0, 0, 0) != 0:
    sys.exit(3)
os.write(1, b"ready\n")
if sys.stdin.readline().strip() != "go":
    sys.exit(4)
failed = 0
for kind, path, flags in orders["steps"]:
    if kind == "open":
        try:
            os.close(os.open(path, flags))
        except OSError:
            failed += 1
    elif kind == "openat":
        try:
            os.close(os.open(path, flags, dir_fd=folder))
        except OSError:
            failed += 1
    elif kind == "stat":
        try:
            os.stat(path)
        except OSError:
            pass
    elif kind == "access":
        os.access(path, os.R_OK)
os.write(1, f"done {failed}\n".encode())
"""


@dataclass(frozen=True)
class Workload:
    """``total`` openat() calls, ``bad`` of them failing, under ``name``."""

    name: str
    ok: int
    bad: int = 0

    @property
    def total(self) -> int:
        return self.ok + self.bad


def random_count(low: int, high: int) -> int:
    return random.SystemRandom().randint(low, high)


def random_name(taken: set[str] | None = None) -> str:
    """A process name no process has now: 6 to 15 characters (the kernel
    keeps 15), a letter first, no fixed prefix."""
    rng = random.SystemRandom()
    taken = (taken or set()) | running_names()
    while True:
        length = rng.randint(6, 15)
        name = rng.choice(NAME_FIRST) + "".join(rng.choice(NAME_REST) for _ in range(length - 1))
        if name not in taken and not name.startswith(RETIRED_PREFIXES):
            return name


def workloads(count: int, *, ok: tuple[int, int], bad: tuple[int, int] = (0, 0)) -> list[Workload]:
    names: set[str] = set()
    made = []
    for _ in range(count):
        name = random_name(names)
        names.add(name)
        made.append(Workload(name, random_count(*ok), random_count(*bad) if bad[1] else 0))
    return made


def running_names() -> set[str]:
    names = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                names.add((entry / "comm").read_text().strip())
    return names


def tolerance(expected: int) -> int:
    return max(2, expected // 20)


def _word(rng: random.SystemRandom, low: int = 4, high: int = 12) -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return rng.choice(string.ascii_letters) + "".join(
        rng.choice(alphabet) for _ in range(rng.randint(low, high) - 1)
    )


class Arena:
    """A folder with a random name in a random place, holding files with
    random names, for the workloads to open; removed afterwards."""

    def __init__(self) -> None:
        rng = random.SystemRandom()
        places = [p for p in PLACES if os.path.isdir(p) and os.access(p, os.W_OK)]
        while True:
            root = Path(rng.choice(places)) / _word(rng)
            try:
                root.mkdir(mode=0o700)
            except FileExistsError:
                continue
            self.root = root
            break
        self.taken: set[str] = set()
        self.files = []
        for _ in range(rng.randint(3, 8)):
            path = self.root / self.fresh_name()
            path.write_bytes(os.urandom(rng.randint(0, 64)))
            self.files.append(path)
        self.subdir = self.root / self.fresh_name()
        self.subdir.mkdir()

    def fresh_name(self) -> str:
        """A name no file of the arena has (nor will have)."""
        rng = random.SystemRandom()
        while True:
            name = _word(rng)
            if name not in self.taken:
                self.taken.add(name)
                return name

    def steps(self, workload: Workload) -> list[tuple[str, str, int]]:
        """The orders for one workload: exactly ``ok`` openat() calls that
        succeed and ``bad`` that fail, in random order, absolute or relative,
        with stat()/access() calls in between that are not openat()."""
        rng = random.SystemRandom()
        steps: list[tuple[str, str, int]] = []
        for _ in range(workload.ok):
            target = rng.choice([*self.files, self.subdir])
            flags = os.O_RDONLY | (os.O_DIRECTORY if target == self.subdir else 0)
            if rng.random() < 0.5:
                steps.append(("open", self.spelled(target), flags))
            else:
                steps.append(("openat", target.name, flags))
        for _ in range(workload.bad):
            missing = self.fresh_name()
            choice = rng.randrange(3)
            if choice == 0:  # ENOENT
                steps.append(("open", str(self.root / missing), os.O_RDONLY))
            elif choice == 1:  # ENOTDIR: a file used as a folder
                steps.append(("openat", f"{rng.choice(self.files).name}/{missing}", os.O_RDONLY))
            else:  # EISDIR: a folder opened for writing
                steps.append(("open", str(self.subdir), os.O_WRONLY))
        for _ in range(rng.randint(workload.total // 4, workload.total // 2)):
            target = rng.choice([*self.files, self.root / self.fresh_name()])
            steps.append((rng.choice(["stat", "access"]), str(target), 0))
        rng.shuffle(steps)
        return steps

    def spelled(self, target: Path) -> str:
        """An absolute path to ``target``, spelled one of several ways."""
        rng = random.SystemRandom()
        form = rng.randrange(4)
        if form == 1:
            return f"{self.root}/./{target.name}"
        if form == 2:
            return f"{self.root.parent}//{self.root.name}/{target.name}"
        if form == 3:
            return f"{self.subdir}/../{target.name}"
        return str(target)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class TraceResult:
    attached: int = 0  # probes bpftrace said it would attach
    ready: bool = False  # bpftrace said every probe was attached
    maps: dict[str, object] = field(default_factory=dict)  # last printout of each map
    stderr: str = ""
    exited: bool = False  # bpftrace stopped after the interrupt
    seconds_to_attach: float = 0.0


def run_trace(script: Path, loads: list[Workload]) -> TraceResult:
    """Start bpftrace on a private copy of ``script``; once every probe is
    attached run ``loads`` (all at once), then stop bpftrace as Ctrl-C would
    and collect the maps it printed."""
    arena = Arena()
    folder = Path(tempfile.mkdtemp(prefix="kernellab-bpftrace-"))  # 0700, root
    try:
        copy = folder / "script.bt"
        shutil.copyfile(script, copy, follow_symlinks=False)
        os.chmod(copy, 0o600)
        procs = [_start_workload(w, arena) for w in loads]
        try:
            return _trace(copy, folder, loads, procs)
        finally:
            for proc in procs:
                kill_group(proc)
                proc.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        arena.remove()


def _trace(
    copy: Path,
    folder: Path,
    loads: list[Workload],
    procs: list[subprocess.Popen[bytes]],
) -> TraceResult:
    result = TraceResult()
    started = time.monotonic()
    proc = subprocess.Popen(
        [BPFTRACE, "-f", "json", copy.name],
        cwd=folder,
        env=BPFTRACE_ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    lines: list[str] = []
    errors: list[str] = []
    ready = threading.Event()
    printing = threading.Event()  # bpftrace left its poll loop and prints its maps

    def read_stdout() -> None:
        size = 0
        assert proc.stdout is not None
        for raw in proc.stdout:
            if not raw.strip():  # the blank lines main() prints once run() returned
                printing.set()
            size += len(raw)
            if size <= MAX_OUTPUT:  # beyond: keep draining so bpftrace never blocks
                lines.append(raw.decode(errors="replace").strip())

    def read_stderr() -> None:
        size = 0
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if line == ATTACHED:
                ready.set()
                continue
            size += len(raw)
            if size <= MAX_STDERR:
                errors.append(line)

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.daemon = True
        reader.start()
    try:
        for workload, load in zip(loads, procs, strict=True):
            _expect(load, "ready", workload)
        deadline = started + ATTACH_TIMEOUT
        while not ready.is_set() and proc.poll() is None and time.monotonic() < deadline:
            ready.wait(0.2)
        result.seconds_to_attach = time.monotonic() - started
        log(f"bpftrace: attached={ready.is_set()} after {result.seconds_to_attach:.1f}s")
        result.ready = ready.is_set()
        if result.ready and proc.poll() is None:
            _run_workloads(loads, procs)
        if proc.poll() is None:
            result.exited = _interrupt(proc, printing)
        else:
            result.exited = True
    finally:
        kill_group(proc)
        proc.wait()
        for reader in readers:
            reader.join(5)
    result.stderr = "\n".join(errors)
    _parse(lines, result)
    return result


def _interrupt(proc: subprocess.Popen[bytes], output: threading.Event) -> bool:
    """SIGINT, as Ctrl-C; then, until bpftrace prints or exits, SIGTERM now
    and then: an interrupt that lands before its poll loop waits is lost,
    and bpftrace resets SIGINT (not SIGTERM) to the default once it prints."""
    kill_group(proc, signal.SIGINT)
    deadline = time.monotonic() + EXIT_TIMEOUT
    nudge = time.monotonic() + NUDGE_EVERY
    while time.monotonic() < deadline:
        try:
            proc.wait(0.2)
            return True
        except subprocess.TimeoutExpired:
            pass
        if not output.is_set() and time.monotonic() >= nudge:
            log("bpftrace did not react to SIGINT yet; sending SIGTERM")
            kill_group(proc, signal.SIGTERM)
            nudge = time.monotonic() + NUDGE_EVERY
    log("bpftrace did not stop; killing it")
    return False


def _start_workload(workload: Workload, arena: Arena) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [PYTHON, "-I", "-S", "-c", WORKLOAD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        close_fds=True,
    )
    orders = {"name": workload.name, "folder": str(arena.root), "steps": arena.steps(workload)}
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(orders).encode() + b"\n")
    proc.stdin.flush()
    return proc


def _expect(proc: subprocess.Popen[bytes], word: str, workload: Workload) -> str:
    """The workload's next line, which must start with ``word``; a workload
    that says nothing in WORKLOAD_TIMEOUT seconds is killed."""
    assert proc.stdout is not None
    timer = threading.Timer(WORKLOAD_TIMEOUT, kill_group, (proc,))
    timer.start()
    try:
        line = proc.stdout.readline().decode(errors="replace").strip()
    finally:
        timer.cancel()
    if not line.startswith(word):
        proc.wait(10)
        assert proc.stderr is not None
        detail = proc.stderr.read().decode(errors="replace")[-500:]
        raise RuntimeError(f"workload {workload.name} said {line!r}: {detail}")
    return line


def _run_workloads(loads: list[Workload], procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:  # all at once
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    for proc, workload in zip(procs, loads, strict=True):
        reply = _expect(proc, "done", workload)
        if reply != f"done {workload.bad}":
            raise RuntimeError(
                f"workload {workload.name}: expected {workload.bad} failures, {reply}"
            )
        proc.wait(WORKLOAD_TIMEOUT)


def _parse(lines: list[str], result: TraceResult) -> None:
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        kind, data = event.get("type"), event.get("data")
        if kind == "attached_probes" and isinstance(data, dict):
            probes = data.get("probes")
            result.attached = probes if isinstance(probes, int) else 0
        elif kind == "map" and isinstance(data, dict):
            result.maps.update(data)


def keyed_counts(result: TraceResult) -> dict[str, dict[str, int]]:
    """Maps keyed by a single string, with integer values: name -> {key: count}."""
    found = {}
    for name, value in result.maps.items():
        if isinstance(value, dict):
            counts = {
                str(k): v
                for k, v in value.items()
                if isinstance(v, int) and not isinstance(v, bool)
            }
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
    if result.attached < 1 or not result.ready:
        detail = tail(result.stderr, 6) or "no output"
        if result.attached >= 1:
            raise Fail(
                f"bpftrace did not finish attaching your script's probes within "
                f"{ATTACH_TIMEOUT} s:\n{detail}"
            )
        raise Fail(f"bpftrace could not run your script:\n{detail}")


def describe_maps(result: TraceResult) -> str:
    """What the script printed, without its keys: a script's output is not
    repeated back (it may hold what it read in the grading machine)."""
    shown = []
    for name, value in list(result.maps.items())[:5]:
        if isinstance(value, dict):
            shown.append(f"{name} with {len(value)} entr{'y' if len(value) == 1 else 'ies'}")
        else:
            shown.append(f"{name} (a single value, no keys)")
    return ", ".join(shown) if shown else "no map at all"
