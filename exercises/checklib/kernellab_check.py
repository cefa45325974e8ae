"""Shared helpers for KernelLab checkers (runs inside the guest, stdlib only).

The platform unpacks a fresh copy of the checker into a private, root-only
directory (/run/kernellab/check-XXXXXXXXXX, inside a 0700 folder) and runs
``/usr/bin/python3 -E -s check.py`` as root with KERNELLAB_MODE (check|submit)
and KERNELLAB_HOME set. The attempt's nonce travels in a file of that
directory, which this library reads once at import and deletes: it is never
in an environment, an argv, or a file that a student's process can read.
The checker must print exactly one JSON object on stdout:

    {"nonce": "...", "checks": [{"id", "title", "passed", "points", "message"}]}

`Report` guarantees that: while a checker runs, file descriptor 1 points at
stderr (so nothing a child process or a stray print() writes can corrupt the
report), every declared check ends up in the report exactly once, an
exception inside a check fails that check only, and the JSON is written once
at the end, even after SIGTERM.

The trust boundary (README, "What a grade can be trusted for"): whatever
comes from the student (a build, a script, a program) runs through
`run_as_student`: as an unprivileged user that owns nothing (STUDENT_UID), in
a fresh directory of its own (`student_dir`), with a clean environment, a
time limit, an output cap and resource limits, and every process of that user
is killed when the step ends. The checker calls tools by absolute path, and
counts a kernel message only if the kernel emitted it (`Kmsg` skips records
that user space wrote to /dev/kmsg).

Typical use::

    report = Report([("builds", "Builds from your sources", 20), ...])
    with report:
        report.run("builds", check_builds)     # returns a message or raises Fail
        report.run_hidden(context)              # submit mode: hidden/*.py
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MESSAGE_LIMIT = 2000
NONCE_FILE = ".kernellab-nonce"
MODES = ("check", "submit")

# The unprivileged user that student content runs as. It has no passwd entry,
# owns no file of the image and belongs to no group.
STUDENT_UID = STUDENT_GID = 64000
STUDENT_PATH = "/usr/local/bin:/usr/bin:/bin"
STUDENT_MAX_PROCESSES = 256
STUDENT_MAX_FILE_BYTES = 256 << 20
STUDENT_OUTPUT_LIMIT = 1 << 20


def _read_nonce() -> str:
    """The attempt's nonce, from the file the platform put beside the checker;
    the file is deleted at once, so nothing started later can read it."""
    path = Path(sys.argv[0]).resolve().parent / NONCE_FILE if sys.argv and sys.argv[0] else None
    if path is None:
        return ""
    try:
        value = path.read_text().strip()
    except OSError:
        return ""
    with contextlib.suppress(OSError):
        path.unlink()
    return value


_NONCE = _read_nonce()


class Fail(Exception):
    """A check failed; the argument is the sentence the student reads."""


def nonce() -> str:
    return _NONCE


def mode() -> str:
    """'check' (the Check button, in the student's guest) or 'submit' (clean guest)."""
    value = os.environ.get("KERNELLAB_MODE", "check")
    return value if value in MODES else "check"


def home() -> Path:
    return Path(os.environ.get("KERNELLAB_HOME", "/root"))


def log(text: str) -> None:
    """Diagnostics for whoever debugs the checker (stderr is free-form)."""
    print(text, file=sys.stderr, flush=True)


# -- the report -------------------------------------------------------------------


@dataclass
class Check:
    id: str
    title: str
    points: int
    passed: bool = False
    message: str = ""
    done: bool = False


@dataclass
class Report:
    """``declared``: the checker's CHECKS. ``check_only``: the ids that
    exercise.toml marks ``check_only = true``; they are not reported at Submit
    (guard them with ``report.runs(id)``)."""

    declared: list[tuple[str, str, int]]
    check_only: Collection[str] = ()
    checks: dict[str, Check] = field(default_factory=dict)
    _stdout_fd: int = -1
    _emitted: bool = False

    def __post_init__(self) -> None:
        for check_id, title, points in self.declared:
            if mode() == "submit" and check_id in self.check_only:
                continue
            self.declare(check_id, title, points)

    def runs(self, check_id: str) -> bool:
        """Whether this run reports ``check_id``."""
        return check_id in self.checks

    def declare(self, check_id: str, title: str, points: int) -> None:
        if check_id not in self.checks:
            self.checks[check_id] = Check(check_id, title, points)

    # Context manager: redirect stdout, always emit.
    def __enter__(self) -> Report:
        sys.stdout.flush()
        self._stdout_fd = os.dup(1)
        os.dup2(2, 1)
        signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None:
            log("checker stopped early:\n" + "".join(traceback.format_exception(exc)))
            why = (
                "the checker ran out of time before reaching this check"
                if exc_type in (TimeoutError, Terminated)
                else "the checker stopped before reaching this check"
            )
            for check in self.checks.values():
                if not check.done:
                    self.result(check.id, False, f"Not checked: {why}. Please try again.")
        self.emit()
        return True  # the report is out: the process ends normally

    def result(self, check_id: str, passed: bool, message: str) -> None:
        check = self.checks[check_id]
        if check.done:
            return
        check.passed = bool(passed)
        check.message = _clip(message)
        check.done = True

    def passed(self, check_id: str) -> bool:
        return self.checks[check_id].passed

    def run(self, check_id: str, func: Callable[..., str], *args: Any, **kwargs: Any) -> bool:
        """Run one check: ``func`` returns the success message or raises Fail."""
        started = time.monotonic()
        try:
            message = func(*args, **kwargs)
        except Fail as failure:
            self.result(check_id, False, str(failure))
        except Terminated:
            raise
        except Exception as exc:
            log(f"check {check_id} crashed:\n{traceback.format_exc()}")
            self.result(
                check_id,
                False,
                f"The checker hit an internal error in this check ({type(exc).__name__}); "
                "this is not necessarily your fault. Try again, and tell your instructor "
                "if it persists.",
            )
        else:
            self.result(check_id, True, message or "OK.")
        log(f"check {check_id}: {self.checks[check_id].passed} ({time.monotonic() - started:.1f}s)")
        return self.checks[check_id].passed

    def skip(self, check_id: str, message: str) -> None:
        """Fail a check that cannot be judged because an earlier one failed."""
        self.result(check_id, False, message)

    def run_hidden(self, context: Any = None) -> None:
        """In submit mode, run every hidden/*.py next to check.py.

        A hidden module declares ``CHECKS = [(id, title, points), ...]`` and
        ``def run_checks(report, context)``. A module that fails to import or crashes
        fails its own checks, never the whole report.
        """
        if mode() != "submit":
            return
        folder = Path(sys.argv[0]).resolve().parent / "hidden"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.py")):
            declared: list[tuple[str, str, int]] = []
            try:
                spec = importlib.util.spec_from_file_location(f"hidden_{path.stem}", path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                declared = list(getattr(module, "CHECKS", []))
                for check_id, title, points in declared:
                    self.declare(check_id, title, points)
                module.run_checks(self, context)
            except Terminated:
                raise
            except Exception:
                log(f"hidden checks {path.name} crashed:\n{traceback.format_exc()}")
            for check_id, _title, _points in declared:
                if not self.checks[check_id].done:
                    self.result(
                        check_id, False, "The checker could not complete this hidden check."
                    )

    def emit(self) -> None:
        if self._emitted:
            return
        self._emitted = True
        payload = {
            "nonce": nonce(),
            "checks": [
                {
                    "id": c.id,
                    "title": c.title,
                    "passed": c.passed if c.done else False,
                    "points": c.points,
                    "message": c.message if c.done else "Not checked.",
                }
                for c in self.checks.values()
            ],
        }
        data = (json.dumps(payload) + "\n").encode()
        fd = self._stdout_fd if self._stdout_fd >= 0 else 1
        while data:
            data = data[os.write(fd, data) :]


class Terminated(BaseException):
    pass


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


# -- commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    returncode: int | None  # None: timed out and killed
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def run(
    argv: list[str],
    *,
    timeout: float = 60,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> Result:
    """Run a program, capture its output (never our stdout), kill it on timeout."""
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        return Result(127, "", f"{argv[0]}: {exc.strerror}")
    try:
        out, err = proc.communicate(input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        return Result(None, out, err)
    except BaseException:
        kill_group(proc)
        raise
    return Result(proc.returncode, out, err)


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# -- student content, as an unprivileged user -----------------------------------------


@contextlib.contextmanager
def student_dir(prefix: str = "work-") -> Iterator[Path]:
    """A fresh, empty folder owned by STUDENT_UID (mode 0700) for one step of
    student content; every process of that user is killed and the folder
    removed afterwards, whatever happens. It is in /tmp, never inside the
    checker's own (root-only) directory."""
    path = Path(tempfile.mkdtemp(prefix=f"kernellab-student-{prefix}", dir="/tmp"))
    try:
        os.chown(path, STUDENT_UID, STUDENT_GID)
        yield path
    finally:
        kill_student_processes()
        shutil.rmtree(path, ignore_errors=True)
        remove_student_files()


# Where an unprivileged process can leave files behind for a later step.
WORLD_WRITABLE = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))  # noqa: S108 (cleaned, not used)


def remove_student_files() -> None:
    """Delete whatever STUDENT_UID left in the world-writable folders, so one
    step of student content cannot leave data for the next."""
    for top in WORLD_WRITABLE:
        for folder, dirs, files in os.walk(top, topdown=False):
            for name in [*files, *dirs]:
                entry = Path(folder) / name
                with contextlib.suppress(OSError):
                    if entry.lstat().st_uid != STUDENT_UID:
                        continue
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()


def copy_to_student_dir(source: Path, target: Path) -> Path:
    """Copy one regular file of the student's into a student_dir, as data:
    owned by STUDENT_UID, mode 0644 (no exec or set-id bits, whatever it had)."""
    if source.is_symlink() or not source.is_file():
        raise Fail(f"{source} is not a regular file.")
    destination = target / source.name
    shutil.copyfile(source, destination, follow_symlinks=False)
    os.chown(destination, STUDENT_UID, STUDENT_GID)
    os.chmod(destination, 0o644)
    return destination


def _student_limits() -> None:  # runs in the child, after it became STUDENT_UID
    resource.setrlimit(resource.RLIMIT_NPROC, (STUDENT_MAX_PROCESSES, STUDENT_MAX_PROCESSES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (STUDENT_MAX_FILE_BYTES, STUDENT_MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_as_student(
    argv: list[str],
    *,
    cwd: Path,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    output_limit: int = STUDENT_OUTPUT_LIMIT,
) -> Result:
    """Run student content: as STUDENT_UID with no supplementary groups, in
    ``cwd`` (a student_dir), with only PATH, HOME, LANG and LC_ALL (plus
    ``env``) in its environment, resource limits, at most ``output_limit``
    bytes of stdout and of stderr kept, killed after ``timeout`` seconds.
    When it returns, no process of that user is left running (a background
    job cannot change the results after the step)."""
    clean = {"PATH": STUDENT_PATH, "HOME": str(cwd), "LANG": "C.UTF-8", "LC_ALL": "C"}
    clean.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=clean,
                user=STUDENT_UID,
                group=STUDENT_GID,
                extra_groups=[],
                umask=0o022,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_student_limits,
                close_fds=True,
            )
        except OSError as exc:
            return Result(127, "", f"{argv[0]}: {exc.strerror}")
        try:
            if input_text is not None:
                assert proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(input_text.encode())
                    proc.stdin.close()
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            kill_group(proc)
            kill_student_processes()
            proc.wait()
        return Result(returncode, _capped(out, output_limit), _capped(err, output_limit))


def _capped(handle: Any, limit: int) -> str:
    """The last ``limit`` bytes a student process wrote to ``handle``."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - limit))
    return handle.read(limit).decode("utf-8", errors="replace")


def student_processes() -> list[int]:
    """PIDs of every process whose real, effective or saved uid is STUDENT_UID."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if str(STUDENT_UID) in line.split()[1:4]:
                    found.append(int(entry.name))
                break
    return found


def kill_student_processes() -> None:
    """SIGKILL every process of STUDENT_UID until none is left (forks included)."""
    for _ in range(200):
        pids = student_processes()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    raise RuntimeError(f"processes of uid {STUDENT_UID} keep coming back")


def tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


@contextlib.contextmanager
def scratch_dir(prefix: str = "work-") -> Iterator[Path]:
    """A private temporary folder, removed afterwards whatever happens."""
    base = Path(sys.argv[0]).resolve().parent
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base if os.access(base, os.W_OK) else None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the kernel log ---------------------------------------------------------------


@dataclass(frozen=True)
class KmsgRecord:
    level: int  # 0 (emerg) .. 7 (debug)
    text: str
    facility: int = 0  # 0: the kernel itself; user space writing /dev/kmsg gets 1 or more

    @property
    def from_kernel(self) -> bool:
        return self.facility == 0


class Kmsg:
    """Read kernel log records logged after this cursor was made (/dev/kmsg).

    Only records the kernel emitted are returned: the kernel gives whatever
    user space writes to /dev/kmsg a non-zero facility (LOG_USER at least),
    so a line a student's program wrote is never taken for the module's.
    Call ``drain()`` right before provoking the kernel, so that what
    ``read()`` returns next was logged by that step and not earlier.
    """

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def drain(self) -> None:
        """Skip everything logged so far."""
        self.read(include_user=True)

    def read(self, *, include_user: bool = False) -> list[KmsgRecord]:
        records: list[KmsgRecord] = []
        while True:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we read: skip ahead
                    continue
                raise
            if not raw:
                break
            header, _, body = raw.decode(errors="replace").partition(";")
            prefix = header.split(",")[0]
            value = int(prefix) if prefix.isdigit() else (1 << 3) | 6
            text = body.split("\n")[0]  # continuation lines carry metadata
            record = KmsgRecord(value & 7, text, value >> 3)
            if include_user or record.from_kernel:
                records.append(record)
        return records

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> Kmsg:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


KERNEL_TROUBLE = re.compile(
    r"\b(BUG:|WARNING:|Oops|general protection fault|Call Trace|kernel BUG|"
    r"list_(add|del) corruption|refcount_t:|UBSAN:|KASAN:)"
)


def trouble(records: list[KmsgRecord]) -> list[str]:
    """Kernel warnings, bugs and oopses among these records (the kernel's own)."""
    return [r.text for r in records if r.from_kernel and KERNEL_TROUBLE.search(r.text)]


# -- modules ----------------------------------------------------------------------


def loaded_modules() -> set[str]:
    try:
        text = Path("/proc/modules").read_text()
    except OSError:
        return set()
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def module_taint(name: str) -> str:
    """The taint letters a loaded module caused (/sys/module/<name>/taint)."""
    try:
        return Path(f"/sys/module/{name}/taint").read_text().strip()
    except OSError:
        return ""


# Letters an unsigned out-of-tree module always brings: not the student's fault.
EXPECTED_MODULE_TAINT = set("OE")
TAINT_MEANING = {
    "P": "a proprietary (non-GPL-compatible) licence, or no licence at all",
    "F": "a forced load",
    "C": "a staging driver",
    "W": "a kernel warning",
}


# -- sysctl -----------------------------------------------------------------------


def sysctl_path(key: str) -> Path:
    """/proc/sys path of a sysctl key ('vm.swappiness' or 'vm/swappiness')."""
    key = key.strip().strip("/")
    first = re.search(r"[./]", key)
    if first is None or first.group() == "/":
        return Path("/proc/sys") / key
    # Dots separate; a slash stands for a literal dot (sysctl.d(5)).
    return Path("/proc/sys") / key.replace(".", "\0").replace("/", ".").replace("\0", "/")


def sysctl_read(key: str) -> str | None:
    try:
        return " ".join(sysctl_path(key).read_text().split())
    except OSError:
        return None
