"""Console sessions recorded as asciicast v2 (the asciinema format): a JSON
header line, then one JSON array per event, ``[seconds, "o", text]`` for
output and ``[seconds, "r", "COLSxROWS"]`` for a resize.

A guest's output must not fill the disk, so a recording has a budget in
bytes on disk (what is written: a control byte becomes a 6-byte JSON escape,
an invalid UTF-8 byte a 3-byte replacement character): the smallest of
CONSOLE_RECORDING_MAX_BYTES per session and what is left of
CONSOLE_RECORDING_VM_MAX_BYTES for the VM and CONSOLE_RECORDING_USER_MAX_BYTES
for the student over their retained recordings (``recording_budget``). When
the budget is reached one marker event says which limit, and the rest is
dropped. Sessions open at once in other web processes are not counted until
they end, so the totals can be passed by at most one session's budget per
such session.

Writes are buffered and flushed at most once a second, so the event loop
pays for a memcpy per chunk, not a syscall.
"""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db.models import Sum

from labplatform.accounts.models import User
from vms.models import ConsoleSession, LabVM

FLUSH_SECONDS = 1.0
# Room kept for the marker event, so that a full recording still ends with it.
MARKER_ROOM = 200


def recording_path(root: Path, vm_id: object, session_id: object) -> Path:
    return Path(root) / str(vm_id) / f"{session_id}.cast"


def _recorded(**filters: object) -> int:
    total = ConsoleSession.objects.filter(**filters).aggregate(total=Sum("recorded_bytes"))
    return int(total["total"] or 0)


def recording_budget(*, vm: LabVM, user: User, live_bytes: int = 0) -> tuple[int, str]:
    """Bytes a new recording of ``user`` on ``vm`` may write, and the limit
    that sets it (for the marker). ``live_bytes``: what recordings still open
    on this VM have written so far (they are counted at their end)."""
    session = int(settings.CONSOLE_RECORDING_MAX_BYTES)
    left_vm = int(settings.CONSOLE_RECORDING_VM_MAX_BYTES) - _recorded(vm=vm) - live_bytes
    left_user = int(settings.CONSOLE_RECORDING_USER_MAX_BYTES) - _recorded(user=user) - live_bytes
    budget, limit = min(
        (session, "the session's recording limit"),
        (left_vm, "this VM's recording quota"),
        (left_user, "your recording quota"),
    )
    return max(0, budget), limit


class CastWriter:
    def __init__(
        self,
        path: Path,
        *,
        cols: int,
        rows: int,
        max_bytes: int,
        title: str,
        limit: str = "the size limit",
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.path = path
        self.max_bytes = max_bytes
        self.limit = limit
        self.started = time.monotonic()
        self.written = 0
        self.truncated = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._file: IO[bytes] | None = path.open("wb", buffering=64 * 1024)
        self._last_flush = self.started
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        }
        self._write(self._encode(header))
        if self.written + MARKER_ROOM > self.max_bytes:
            self._stop()  # nothing left of the budget: say so at once

    @staticmethod
    def _encode(value: object) -> bytes:
        return (json.dumps(value, ensure_ascii=False) + "\n").encode()

    def _write(self, line: bytes) -> None:
        if self._file is None:
            return
        self._file.write(line)
        self.written += len(line)
        now = time.monotonic()
        if now - self._last_flush > FLUSH_SECONDS:
            self._file.flush()
            self._last_flush = now

    def _stop(self) -> None:
        self.truncated = True
        marker = f"\r\n[recording stopped: {self.limit} was reached]\r\n"
        self._write(self._encode([self._now(), "o", marker]))

    def _event(self, kind: str, data: str) -> None:
        if self._file is None or self.truncated:
            return
        line = self._encode([self._now(), kind, data])
        if self.written + len(line) + MARKER_ROOM > self.max_bytes:
            self._stop()
            return
        self._write(line)

    def _now(self) -> float:
        return round(time.monotonic() - self.started, 6)

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> None:
        if self._file is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._event("o", tail)
            self._file.close()
            self._file = None
