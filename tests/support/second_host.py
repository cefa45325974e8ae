"""A second hypervisor host on this machine: its own libvirtd and virtlogd in
their own mount and network namespaces, started and stopped with the
platform's own recipe (``./kernellab host NAME start|stop|kill``). The
machine's libvirtd is never touched."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ROOT

HOSTS_DIR = Path("/var/lib/kernellab/hosts")


def _kernellab_host(name: str, action: str) -> str:
    done = subprocess.run(
        [str(ROOT / "kernellab"), "host", name, action],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kernellab host {name} {action}: {done.stdout}{done.stderr}")
    return done.stdout.strip()


@dataclass(frozen=True)
class SecondHost:
    name: str

    @property
    def folder(self) -> Path:
        return HOSTS_DIR / self.name

    @property
    def uri(self) -> str:
        return _kernellab_host(self.name, "uri")

    @property
    def vm_dir(self) -> Path:
        """The VM folder of its worker (VM_DIR): the same path inside its
        namespace and out, as on a machine of its own."""
        return self.folder / "vms"

    def start(self) -> None:
        _kernellab_host(self.name, "start")

    def stop(self) -> None:
        _kernellab_host(self.name, "stop")

    def kill(self) -> None:
        """Lost: SIGKILL to its libvirtd, virtlogd and every guest of it."""
        _kernellab_host(self.name, "kill")

    def qemu_pids(self) -> list[int]:
        """This host's QEMU processes (their command line names its VM folder)."""
        found = subprocess.run(
            ["pgrep", "-f", f"qemu-system.*{self.vm_dir}/"], capture_output=True, text=True
        )
        return [int(pid) for pid in found.stdout.split()]


@contextmanager
def second_host() -> Iterator[SecondHost]:
    host = SecondHost(f"t2-{uuid.uuid4().hex[:8]}")
    try:
        host.start()
        yield host
    finally:
        host.stop()  # raises if anything of it is left running: its folder is kept then
        shutil.rmtree(host.folder, ignore_errors=True)
