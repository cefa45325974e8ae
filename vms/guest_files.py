"""Files in and out of a student's running guest, through its guest agent
(guest-file-open/read/write, in chunks): what the console page's upload and
download do. The guest is the student's, so any absolute path in it is
theirs to write or read; the limits are the size (VM_FILE_MAX_BYTES each way,
said in the message) and a path that means one file.
"""

from __future__ import annotations

import posixpath

from django.conf import settings

from vms.errors import FileRefused, FileTooLarge, InvalidState
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.errors import AgentProtocolError, HypervisorError
from vms.models import LabVM, VMState

MAX_PATH = 1024


def file_limit_text() -> str:
    limit = settings.VM_FILE_MAX_BYTES
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def guest_path(*, directory: str, name: str = "") -> str:
    """An absolute, normalised path in the guest (``name`` a plain file name)."""
    if name and ("/" in name or name in (".", "..")):
        raise FileRefused(f"{name!r} is not a file name.")
    path = posixpath.join(directory or "/root", name) if name else directory
    if not path.startswith("/") or "\0" in path or len(path) > MAX_PATH:
        raise FileRefused("The path in the VM must be absolute, like /root/notes.txt.")
    path = posixpath.normpath(path)
    if path == "/":
        raise FileRefused("Name a file, not the root folder.")
    return path


def _agent(vm: LabVM) -> GuestAgent:
    if vm.state != VMState.RUNNING:
        raise InvalidState("Start the VM first: files move only into a running VM.")
    from vms.services import vm_agent

    return vm_agent(vm)


def vm_file_upload(*, vm: LabVM, directory: str, name: str, data: bytes) -> str:
    """Write ``data`` as ``directory/name`` in the guest (replacing it); returns the path."""
    if len(data) > settings.VM_FILE_MAX_BYTES:
        raise FileTooLarge(
            f"{name} is {len(data)} bytes; a file sent to the VM may be at most "
            f"{file_limit_text()}."
        )
    path = guest_path(directory=directory, name=name)
    try:
        _agent(vm).write_file(path, data)
    except HypervisorError as exc:
        raise FileRefused(f"The VM did not take {path}: {exc}") from exc
    return path


def vm_file_download(*, vm: LabVM, path: str) -> tuple[str, bytes]:
    """The bytes of ``path`` in the guest, and the path as normalised."""
    path = guest_path(directory=path)
    try:
        return path, _agent(vm).read_file(path, settings.VM_FILE_MAX_BYTES)
    except AgentProtocolError as exc:
        if "larger than" in str(exc):
            raise FileTooLarge(
                f"{path} is larger than {file_limit_text()}, the most a download may be."
            ) from exc
        raise FileRefused(f"The VM did not give {path}: {exc}") from exc
    except HypervisorError as exc:
        raise FileRefused(f"The VM did not give {path}: {exc}") from exc
