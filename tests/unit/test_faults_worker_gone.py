"""The reaper tells a lost step from a slow one by whether the process that
signed it is alive. A pool process of a worker killed as a whole (SIGKILL to
its process group) is reparented, and where nothing reaps orphans (an init
that does not wait(), a container's PID 1) it stays a zombie: dead, though
/proc still lists it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vms import reaper


def signature(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child of this process, killed and not yet waited for."""
    child = subprocess.Popen(["sleep", "600"])
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never became a zombie"
        time.sleep(0.01)
    yield child.pid
    child.wait()


def test_a_zombie_worker_is_gone(zombie: int) -> None:
    assert reaper._worker_is_gone(signature(zombie))


def test_a_live_worker_is_not_gone() -> None:
    assert not reaper._worker_is_gone(signature(os.getpid()))


def test_a_worker_that_no_longer_exists_is_gone() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert reaper._worker_is_gone(signature(child.pid))


def test_a_worker_on_another_machine_is_not_judged_from_here() -> None:
    assert not reaper._worker_is_gone(f"another-{socket.gethostname()}:1")
