"""A lab guest whose kernel panicked: say so to its student within seconds.

The panic watcher (manage.py watch_host, vms.hypervisor.watch) calls
vm_crashed on libvirt's lifecycle event; the reaper calls it too for any
guest it finds ended by a panic, so that a crash missed while the watcher
was down is never left "Running". The VM keeps its disk: the student can
Restart it (the same disk, booted again) or Reset it (a fresh disk).
"""

from __future__ import annotations

import logging
import re

from vms.events import transition_and_publish
from vms.lifecycle import vm_files
from vms.models import LabVM, VMKind, VMState

log = logging.getLogger(__name__)

CRASH_LOG_LINES = 40
# A crash report's first lines, which say what crashed (a long call trace can
# push them out of the last CRASH_LOG_LINES), looked for in the log's last
# lines; a few lines before the last such line belong to the same report
# (an oops says "BUG: ..." and "#PF: ..." before "Oops: ...").
_REPORT_START = re.compile(
    r"sysrq: Trigger a crash|BUG: |kernel BUG at|Oops: |general protection fault"
    r"|Unable to handle|------------\[ cut here \]------------"
)
_REPORT_WINDOW_LINES = 400
_REPORT_LEAD_LINES = 3
_TAIL_BYTES = 64 * 1024
# Terminal escapes and control characters other than newline and tab.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")

CRASH_MESSAGE = (
    "The guest's kernel crashed (a kernel panic), so the VM stopped. Its disk is kept: "
    "Restart boots it again as it was, Reset gives you a fresh disk."
)


def console_tail(path: object, lines: int = CRASH_LOG_LINES) -> str:
    """The last lines the guest printed on its kernel console, as text; when
    the crash report there is longer than ``lines``, its first lines (what
    crashed, and where) rather than the register dump at its end."""
    try:
        with open(str(path), "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _TAIL_BYTES))
            raw = handle.read()
    except OSError:  # none yet, or one virtlogd rotated (root's, 0600)
        return ""
    text = _CONTROL.sub("", raw.decode("utf-8", errors="replace").replace("\r", ""))
    tail = text.rstrip("\n").split("\n")[-_REPORT_WINDOW_LINES:]
    starts = [n for n, line in enumerate(tail) if _REPORT_START.search(line)]
    if starts and len(tail) - starts[-1] > lines:
        first = max(0, starts[-1] - _REPORT_LEAD_LINES)
        return "\n".join(tail[first : first + lines])
    return "\n".join(tail[-lines:])


def vm_crashed(*, domain_uuid: str) -> LabVM | None:
    """Mark the running lab VM of this domain CRASHED with its console's last
    lines; None if the domain is no running lab VM of ours (a pool or grading
    guest, a VM already stopped or gone)."""
    vm = (
        LabVM.objects.filter(domain_uuid=domain_uuid, kind=VMKind.LAB, state=VMState.RUNNING)
        .select_related("host", "exercise", "owner")
        .first()
    )
    if vm is None:
        return None
    tail = console_tail(vm_files(vm).kernel_log)
    if not transition_and_publish(
        vm,
        VMState.RUNNING,
        VMState.CRASHED,
        progress="Crashed",
        error_code="kernel_panic",
        error_message=CRASH_MESSAGE,
        crash_log=tail,
    ):
        return None
    log.warning("VM %s: the guest's kernel panicked", vm.id)
    return vm
