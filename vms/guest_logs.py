"""A lab guest's console logs, read by the web wherever the guest runs: the
shell's scrollback (what a console opened late starts with) and the kernel
log (the console page's Kernel log pane and boot view).

libvirt writes both on the guest's own host (GuestFolder.shell_log and
kernel_log). A web process on that machine reads the files itself. For a lab
on another host, the web asks that host's lab worker (the task
``vms.guest_log_read`` on its lab queue) and waits at most
GUEST_LOG_WAIT_SECONDS: a busy or silent host gives an empty read that says
so, never a hung page or console. The page's kernel-log reader asks again
from the same offset; a console opened again gets the scrollback then.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict
from typing import Literal

from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from vms.console.hub import read_log_tail
from vms.kernel_log import KernelLogPiece, kernel_log_read
from vms.models import LabVM
from vms.queues import Work

log = logging.getLogger(__name__)

Which = Literal["shell", "kernel"]

# What a console opened while the lab's host cannot hand over its scrollback starts with.
SCROLLBACK_UNAVAILABLE = (
    b"\r\n[The earlier output of this console is on the lab machine, which did not "
    b"answer in time; reconnect to see it.]\r\n"
)


def _folder_here(vm: LabVM) -> bool:
    """Whether this process sees the VM's folder: it runs on the lab's host."""
    from vms.lifecycle import vm_files

    return vm_files(vm).directory.is_dir()


def read_here(*, vm: LabVM, which: Which, offset: int = 0, file: str = "") -> dict[str, object]:
    """Read one of the VM's logs from this machine's VM folder: the shell
    log's tail (base64, for JSON) or a piece of the kernel log."""
    from vms.lifecycle import vm_files

    folder = vm_files(vm)
    if which == "shell":
        tail = read_log_tail(folder.shell_log, int(settings.CONSOLE_SCROLLBACK_BYTES))
        return {"tail": base64.b64encode(tail).decode()}
    piece = kernel_log_read(
        path=folder.kernel_log, guest=str(vm.domain_uuid or ""), offset=offset, file=file
    )
    return asdict(piece)


def _ask_host(vm: LabVM, which: Which, offset: int, file: str) -> dict[str, object] | None:
    from vms.tasks import guest_log_read

    wait = float(settings.GUEST_LOG_WAIT_SECONDS)
    result = guest_log_read.apply_async(
        (str(vm.pk), which, offset, file),
        queue=vm.host.queue_for(Work.LAB),
        expires=wait,  # a read nobody waits for any more is not done
    )
    try:
        answer = result.get(timeout=wait, disable_sync_subtasks=False)
    except CeleryTimeout:
        answer = None
    finally:
        result.forget()
    if not isinstance(answer, dict):
        log.warning("the %s log of %s: host %s did not answer", which, vm.pk, vm.host.name)
        return None
    return answer


def shell_scrollback(*, vm: LabVM) -> bytes:
    """The tail of the VM's shell console since power-on, for a console's
    first screen."""
    if _folder_here(vm):
        answer: dict[str, object] | None = read_here(vm=vm, which="shell")
    else:
        answer = _ask_host(vm, "shell", 0, "")
    if answer is None:
        return SCROLLBACK_UNAVAILABLE
    return base64.b64decode(str(answer["tail"]))


def kernel_log_piece(*, vm: LabVM, offset: int, file: str) -> KernelLogPiece:
    """What the VM's kernel said from ``offset`` of ``file`` (vms.kernel_log).
    When the host does not answer: nothing, from where the reader is, so that
    it reads again from there."""
    if _folder_here(vm):
        answer: dict[str, object] | None = read_here(
            vm=vm, which="kernel", offset=offset, file=file
        )
    else:
        answer = _ask_host(vm, "kernel", offset, file)
    if answer is None:
        return KernelLogPiece(
            text="", file=file, start=offset, offset=offset, restarted=False, more=False
        )
    return KernelLogPiece(**answer)  # type: ignore[arg-type]
