"""The folder of one guest: the only place that names its files.

Every guest the platform runs has one, with the same layout: a student's lab
VM (``<VM_DIR>/<vm-id>/``), a clean grading guest
(``<VM_DIR>/grading/<attempt-id>/``), a warm-pool entry
(``<VM_DIR>/pool/<profile>/<domain-uuid>/``), the KVM probe's guest and the
trial guests of ``manage.py try_exercise``. A pool entry becomes a lab VM's or
a grading guest's folder by a rename, so the names must agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vms.hypervisor.overlay import vm_files_remove


@dataclass(frozen=True)
class GuestFolder:
    directory: Path

    @property
    def disk(self) -> Path:
        """The qcow2 overlay on the image's base disk."""
        return self.directory / "disk.qcow2"

    @property
    def kernel_log(self) -> Path:
        """Everything the guest's ttyS0 said since power-on (libvirt's serial
        ``<log>``, virtlogd): kernel messages, oopses, panics."""
        return self.directory / "kernel.log"

    @property
    def shell_log(self) -> Path:
        """The student's console (hvc0): the scrollback a late joiner gets."""
        return self.directory / "shell.log"

    @property
    def state_file(self) -> Path:
        """A saved guest's memory (a warm-pool entry, a trial's pristine guest)."""
        return self.directory / "state.save"

    def create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        """The folder and all in it (overlay, logs, saved state), if any."""
        vm_files_remove(self.directory)
