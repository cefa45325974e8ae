"""Console sessions recorded as asciicast v2 (the asciinema format): a JSON
header line, then one JSON array per event, ``[seconds, "o", text]`` for
output and ``[seconds, "r", "COLSxROWS"]`` for a resize.

A recording is capped at CONSOLE_RECORDING_MAX_BYTES (a flood must not fill
the disk); past the cap one marker line is written and the rest is dropped.
Writes are buffered and flushed at most once a second, so the event loop
pays for a memcpy per chunk, not a syscall.
"""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import IO

FLUSH_SECONDS = 1.0


def recording_path(root: Path, vm_id: object, session_id: object) -> Path:
    return Path(root) / str(vm_id) / f"{session_id}.cast"


class CastWriter:
    def __init__(self, path: Path, *, cols: int, rows: int, max_bytes: int, title: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.path = path
        self.max_bytes = max_bytes
        self.started = time.monotonic()
        self.written = 0
        self.truncated = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._file: IO[str] | None = path.open("w", encoding="utf-8", buffering=64 * 1024)
        self._last_flush = self.started
        header = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        }
        self._line(header)

    def _line(self, value: object) -> None:
        if self._file is None:
            return
        text = json.dumps(value, ensure_ascii=False) + "\n"
        self._file.write(text)
        self.written += len(text)
        now = time.monotonic()
        if now - self._last_flush > FLUSH_SECONDS:
            self._file.flush()
            self._last_flush = now

    def _event(self, kind: str, data: str) -> None:
        if self._file is None or self.truncated:
            return
        if self.written + len(data) > self.max_bytes:
            self.truncated = True
            self._line([self._now(), "o", "\r\n[recording stopped: size limit reached]\r\n"])
            return
        self._line([self._now(), kind, data])

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
