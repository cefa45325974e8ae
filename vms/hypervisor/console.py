"""A guest console as a non-blocking libvirt stream, driven from asyncio.

libvirt delivers stream readiness on its own event loop (the process-wide
default implementation, a daemon thread, see host.ensure_event_loop). The
readiness callback drains the non-blocking stream right there (the loop
virsh console runs) and hands the bytes to the asyncio loop in one
``call_soon_threadsafe``; keystrokes are sent with a non-blocking ``send``
from the asyncio thread. The asyncio loop never waits on libvirt.

The stream is always drained: libvirt's client library queues console data
without limit when nobody reads it (measured: +15 MiB in 30 s of a flood), so
pausing the reader would only move the memory problem into libvirt. Bounding
memory is the hub's job (vms/console/hub.py).

libvirt allows one console client per domain: opening with FORCE takes the
console away from whoever had it, and that holder sees ``on_closed`` with
``taken_over=True`` so it can tell its viewers instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from vms.hypervisor.errors import GuestNotFound, HypervisorError
from vms.hypervisor.host import Host

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
INBOX_MAX = 4 * 1024 * 1024  # output waiting for the asyncio loop, at most
# Output is handed over at once while the console is interactive (echoes,
# prompts, a short listing). Once a burst passes BURST_BYTES without a quiet
# gap of QUIET_SECONDS, it is handed over every BATCH_SECONDS instead: a guest
# writes its console in pieces of a few dozen bytes (measured: 24,600 pieces
# for 1 MB), and one websocket frame per piece costs the web process, the
# browser and, on a busy host, the guest itself more than the bytes do.
BURST_BYTES = 4096
QUIET_SECONDS = 0.02
BATCH_SECONDS = 0.01
_EVENTS = (
    libvirt.VIR_STREAM_EVENT_READABLE
    | libvirt.VIR_STREAM_EVENT_ERROR
    | libvirt.VIR_STREAM_EVENT_HANGUP
)


@dataclass(frozen=True)
class StreamClosed:
    reason: str
    taken_over: bool  # another client opened the console with FORCE
    guest_running: bool


class ConsoleStream:
    """One open console of one domain.

    ``on_data(bytes)`` is called on the asyncio loop with the guest's output;
    ``on_closed(StreamClosed)`` once when the stream ends for any reason other
    than ``close()``.
    """

    def __init__(
        self,
        host: Host,
        domain_uuid: str,
        device: str,
        *,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[bytes], None],
        on_closed: Callable[[StreamClosed], None],
    ) -> None:
        self.host = host
        self.domain_uuid = domain_uuid
        self.device = device
        self.loop = loop
        self._on_data = on_data
        self._on_closed = on_closed
        self._stream: libvirt.virStream | None = None
        self._domain: libvirt.virDomain | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._inbox = bytearray()
        self._ended: str | None = None
        self._wakeup_pending = False
        self._last_delivery = 0.0
        self._events = _EVENTS  # what libvirt calls _libvirt_event for
        self._burst = 0  # bytes delivered since the console was last quiet
        self._pending_input = bytearray()
        self._flush_handle: asyncio.TimerHandle | None = None

    # -- opening and closing (blocking libvirt calls: run them in a thread) --

    def open_blocking(self) -> None:
        conn = self.host.conn
        try:
            domain = conn.lookupByUUIDString(self.domain_uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise GuestNotFound(f"no domain {self.domain_uuid}") from exc
            raise HypervisorError(f"looking up {self.domain_uuid} failed: {exc}") from exc
        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            domain.openConsole(self.device, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            stream.eventAddCallback(_EVENTS, self._libvirt_event, None)
        except libvirt.libvirtError as exc:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise HypervisorError(f"opening console {self.device}: {exc}") from exc
        self._domain, self._stream = domain, stream

    async def open(self) -> None:
        await asyncio.to_thread(self.open_blocking)

    def close(self) -> None:
        """Our own close: no on_closed callback."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(libvirt.libvirtError):
                stream.eventRemoveCallback()
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- output: libvirt's event thread reads, the asyncio loop gets bytes --

    def _libvirt_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        """Runs on libvirt's event thread: read everything that waits (the
        canonical libvirt console loop, as in virsh console), then hand it to
        the asyncio loop in one call. Never blocks: the stream is NONBLOCK."""
        chunks: list[bytes] = []
        ended: str | None = None
        while True:
            try:
                data = stream.recv(READ_CHUNK)
            except libvirt.libvirtError as exc:
                ended = f"console stream failed: {exc}"
                break
            if data == -2:
                break
            if not isinstance(data, bytes) or not data:
                ended = "console closed"
                break
            chunks.append(data)
        if ended is None and events & (
            libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        ):
            ended = "console hung up"
        if ended is not None:
            with contextlib.suppress(libvirt.libvirtError):
                stream.eventRemoveCallback()
        # A guest writes its console in small pieces (a flood arrives as
        # thousands of ~16-byte reads a second): batch them, and wake the
        # asyncio loop only when it has not been woken for a batch already.
        with self._lock:
            self._inbox += b"".join(chunks)
            if len(self._inbox) > INBOX_MAX:  # the loop is stalled: keep the newest
                del self._inbox[: len(self._inbox) - INBOX_MAX]
            if ended is not None:
                self._ended = ended
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        """On the asyncio loop: output waits. Deliver it now, unless a burst
        is under way; then let it gather for a moment (more comes in meanwhile,
        without waking the loop again: the wakeup is still pending)."""
        quiet = self.loop.time() - self._last_delivery >= QUIET_SECONDS
        if quiet:
            self._burst = 0
        if quiet or self._burst < BURST_BYTES:
            self._deliver()
            return
        # Meanwhile, libvirt need not call us for every piece either: its
        # client library keeps reading the socket and queues the pieces, and
        # one read takes them all when events resume.
        self._set_events(0)
        self.loop.call_later(BATCH_SECONDS, self._deliver)

    def _set_events(self, events: int) -> None:
        if self._stream is None or self._events == events:
            return
        try:
            self._stream.eventUpdateCallback(events)
        except libvirt.libvirtError:
            return  # the stream ended; its callback reports how
        self._events = events

    def _deliver(self) -> None:
        with self._lock:
            data, self._inbox = bytes(self._inbox), bytearray()
            ended = self._ended
            self._wakeup_pending = False
        self._last_delivery = self.loop.time()
        self._burst += len(data)
        if self._closed:
            return
        self._set_events(_EVENTS)
        if data:
            self._on_data(data)
        if ended is not None:
            self._end(ended)

    def write(self, data: bytes) -> None:
        """Non-blocking; what libvirt cannot take now is retried shortly (keys
        are never dropped, and they are few)."""
        if self._closed:
            return
        self._pending_input += data
        self._flush_input()

    def _flush_input(self) -> None:
        self._flush_handle = None
        while self._pending_input and self._stream is not None and not self._closed:
            try:
                sent = self._stream.send(bytes(self._pending_input[:READ_CHUNK]))
            except libvirt.libvirtError as exc:
                self._end(f"console stream failed: {exc}")
                return
            if sent == -2:
                self._flush_handle = self.loop.call_later(0.005, self._flush_input)
                return
            del self._pending_input[: max(0, sent)]

    # -- the end --

    def _guest_running(self) -> bool:
        if self._domain is None:
            return False
        try:
            state, _ = self._domain.state()
        except libvirt.libvirtError:
            return False
        return state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)

    def _end(self, reason: str) -> None:
        if self._closed:
            return
        self.close()
        self.loop.create_task(self._report_end(reason))

    async def _report_end(self, reason: str) -> None:
        running = await asyncio.to_thread(self._guest_running)
        # The guest still runs but our stream ended: somebody forced the console.
        self._on_closed(StreamClosed(reason=reason, taken_over=running, guest_running=running))
