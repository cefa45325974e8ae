"""Reading a lab guest's kernel log for the console page's "Kernel log" pane
(and the boot shown in its terminal): the file libvirt's serial ``<log>``
writes (GuestFolder.kernel_log), which holds everything the guest's ttyS0 said
since power-on, whoever was watching.

The page reads it in pieces: it sends where it stopped (``offset``, and
``file``, which names the log of one guest so that a Reset's new log starts
over) and gets what came since, at most ``KERNEL_LOG_CHUNK`` bytes at a time
(``more`` says to read again at once). A first read starts that many bytes
before the end: the pane keeps about that much.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KERNEL_LOG_CHUNK = 256 * 1024


@dataclass(frozen=True)
class KernelLogPiece:
    text: str
    file: str  # changes when the log is a new file (a Reset, a Restart of a cold disk)
    start: int  # offset of text's first byte in the file
    offset: int  # where the next read starts
    restarted: bool  # the reader's position was not in this file: start over
    more: bool  # the file holds more than this piece: read again at once


def kernel_log_read(*, path: Path, guest: str, offset: int, file: str) -> KernelLogPiece:
    """``guest`` names the guest the log belongs to (a lab VM's domain uuid:
    a Reset makes a new one, a Restart keeps it and its log goes on)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:  # none yet, or one virtlogd rotated (root's, 0600)
        return KernelLogPiece(text="", file="", start=0, offset=0, restarted=bool(file), more=False)
    with handle:
        stat = os.fstat(handle.fileno())
        file_id = f"{guest}:{stat.st_ino}"
        size = stat.st_size
        restarted = file != file_id or offset > size
        start = max(0, size - KERNEL_LOG_CHUNK) if restarted else offset
        handle.seek(start)
        data = handle.read(min(size - start, KERNEL_LOG_CHUNK))
    # Never split a UTF-8 character: stop before an incomplete one at the end.
    cut = _complete_utf8(data)
    return KernelLogPiece(
        text=data[:cut].decode("utf-8", errors="replace"),
        file=file_id,
        start=start,
        offset=start + cut,
        restarted=restarted,
        more=start + cut < size,
    )


def _complete_utf8(data: bytes) -> int:
    """Length of ``data`` without a multi-byte character cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its character complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)
