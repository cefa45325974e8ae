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

Input never runs on the asyncio loop. libvirt's remote client sends stream
data blocking, whatever the stream's flags: once the guest stops reading its
console (a stopped shell, a wedged tty), libvirtd stops reading our socket
and ``send`` waits for as long as the guest does. Keystrokes therefore go
through a small queue of at most ``input_max`` bytes (past it, a frame is
refused and the caller says so) to a writer thread of this stream, and a
stream that takes input (``private_connection=True``) has a libvirt
connection of its own: a stuck send holds that connection's socket, and on
a shared one every call of the process would queue behind it. Tearing a
stream down (``abort``, closing its connection) is a round trip on that
connection too, so it also happens on the writer thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import tty
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from vms.hypervisor.errors import GuestNotFound, HypervisorError
from vms.hypervisor.host import Host

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
INPUT_MAX = 256 * 1024  # keystrokes waiting for the guest, at most (default)
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
        private_connection: bool = False,
        input_max: int = INPUT_MAX,
    ) -> None:
        self.host = host
        self.input_max = input_max
        # The connection this stream lives on: its own for a stream that
        # takes input (see the module's docstring), else the host's.
        self._own_host = Host(host.uri) if private_connection else None
        self.domain_uuid = domain_uuid
        self.device = device
        self.loop = loop
        self._on_data = on_data
        self._on_closed = on_closed
        self._stream: libvirt.virStream | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._inbox = bytearray()
        self._ended: str | None = None
        self._wakeup_pending = False
        self._last_delivery = 0.0
        self._events = _EVENTS  # what libvirt calls _libvirt_event for
        self._burst = 0  # bytes delivered since the console was last quiet
        # Input, shared with the writer thread under _input_ready's lock.
        self._input_ready = threading.Condition()
        self._pending_input = bytearray()  # queued and in flight
        self._writer_running = False
        self._teardown: Callable[[], None] | None = None  # for the writer, once it is idle

    # -- opening and closing (blocking libvirt calls: run them in a thread) --

    def open_blocking(self) -> None:
        try:
            self._open_blocking()
        except HypervisorError:
            if self._own_host is not None:
                self._own_host.close()
            raise

    def _open_blocking(self) -> None:
        conn = (self._own_host or self.host).conn
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
        self._stream = stream

    async def open(self) -> None:
        await asyncio.to_thread(self.open_blocking)

    def close(self) -> None:
        """Our own close: no on_closed callback. Returns at once: the libvirt
        side is torn down on the writer thread, after the send it may be
        stuck in, or on a thread of its own."""
        if self._closed:
            return
        self._closed = True
        stream, self._stream = self._stream, None
        own_host = self._own_host

        def teardown() -> None:
            if stream is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.eventRemoveCallback()
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
            if own_host is not None:
                own_host.close()

        with self._input_ready:
            self._pending_input.clear()  # input for a closed console goes nowhere
            if self._writer_running:
                self._teardown = teardown
                self._input_ready.notify()
                return
        threading.Thread(target=teardown, name="console-teardown", daemon=True).start()

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

    # -- input: queued on the asyncio loop, sent by the writer thread --

    @property
    def pending_input(self) -> int:
        return len(self._pending_input)

    def write(self, data: bytes) -> bool:
        """Queue keystrokes for the guest; never blocks. False, and nothing
        queued, when more than ``input_max`` bytes already wait: the guest is
        not reading its console, and a frame cut in two would be worse than
        one refused whole."""
        if self._closed or self._stream is None:
            return False
        with self._input_ready:
            if len(self._pending_input) + len(data) > self.input_max:
                return False
            self._pending_input += data
            self._input_ready.notify()
            if self._writer_running:
                return True
            self._writer_running = True
        threading.Thread(
            target=self._write_input, name=f"console-input-{self.device}", daemon=True
        ).start()
        return True

    def _write_input(self) -> None:
        """The writer thread: sends queued input while the stream is open,
        then runs the teardown that close() left for it."""
        stream = self._stream
        failure: str | None = None
        while stream is not None:
            with self._input_ready:
                while not self._pending_input and self._teardown is None:
                    self._input_ready.wait()
                if self._teardown is not None:
                    break
                chunk = bytes(self._pending_input[:READ_CHUNK])
            try:
                sent = stream.send(chunk)  # blocks while the guest does not read
            except libvirt.libvirtError as exc:
                failure = f"console stream failed: {exc}"
                break
            if sent == -2:  # libvirt's own buffer is full: try again shortly
                time.sleep(0.005)
                continue
            with self._input_ready:
                del self._pending_input[: max(0, sent)]
        with self._input_ready:
            self._writer_running = False
            teardown, self._teardown = self._teardown, None
        if teardown is not None:
            teardown()
        elif failure is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self._end, failure)

    # -- the end --

    def _guest_running(self) -> bool:
        # Asked on the host's connection: a private one is being closed now.
        try:
            state, _ = self.host.conn.lookupByUUIDString(self.domain_uuid).state()
        except (libvirt.libvirtError, HypervisorError):
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


class ConsoleHold:
    """Keep a new guest's shell console "connected" in QEMU from the moment
    the guest runs, so that the student's console, opened later, answers the
    first keystroke at once.

    Why: QEMU notices that one of its pty consoles got a reader by polling
    once a second and reads no input until then, so a console opened through
    libvirt (``openConsole``; libvirt 9.0 serves pty consoles only: a unix
    socket chardev is refused with "not using a PTY") answered its first
    keystroke up to a second late. Neither guest output nor a FORCE takeover
    of a libvirt console that QEMU already saw avoids it: libvirt closes the
    old reader before it opens the new one, and QEMU may see the hang-up in
    between (measured: two takeovers in five waited the full second).

    So the hold opens the pty itself, on the hypervisor host, as a second
    opener libvirt knows nothing about, in raw mode (as libvirt sets it), and
    never reads it: whatever the guest writes meanwhile waits in the pty for
    the student's console, which gets every byte (a hold that read would race
    the page's reader for them during a cold boot, whose console is open from
    power-on). ``release(keep_seconds)`` (the guest is ready) shortens
    the hold to ``keep_seconds`` more; ``seconds`` bounds it. Meanwhile QEMU
    has seen a reader; a libvirt reader opening the pty never finds it
    unconnected, and when the hold closes, the libvirt reader keeps it
    connected. Only a guest whose console nobody reads notices: past the pty's
    buffer (4 KiB) its console output waits until a reader comes or the hold
    ends. On a machine where the pty is not (a worker not
    on its hypervisor host) the hold says so in the log and does nothing.
    """

    POLL_SECONDS = 0.02

    def __init__(self, host: Host, domain_uuid: str, device: str, *, seconds: float) -> None:
        self.host = host
        self.domain_uuid = domain_uuid
        self.device = device
        self.seconds = seconds
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.end_reason = ""
        self._deadline = time.monotonic() + seconds

    def start(self) -> ConsoleHold:
        threading.Thread(target=self._run, name="console-hold", daemon=True).start()
        return self

    def release(self, *, keep_seconds: float) -> None:
        """The guest is ready: hold on for ``keep_seconds`` more at most."""
        self._deadline = min(self._deadline, time.monotonic() + keep_seconds)

    def _run(self) -> None:
        fd = -1
        try:
            fd = self._open()
            if fd >= 0:
                self.opened.set()
                self._hold(fd)
                self.end_reason = "time is up"
        except OSError as exc:
            self.end_reason = f"cannot hold the console: {exc}"
            log.info("console hold of %s: %s", self.domain_uuid, self.end_reason)
        finally:
            if fd >= 0:
                os.close(fd)
            self.ended.set()

    def _pty_path(self) -> str | None:
        """The pty of the console once the guest runs (None: not yet; "":
        the running guest has no such pty console). Not while a restore
        loads the saved guest (the domain is paused then): a console that
        QEMU connected before the saved device state was loaded showed none
        of the guest's output afterwards (measured)."""
        try:
            domain = self.host.conn.lookupByUUIDString(self.domain_uuid)
            if domain.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                return None
            root = ET.fromstring(domain.XMLDesc(0))  # noqa: S314 - libvirt's own definition
        except (libvirt.libvirtError, HypervisorError):
            return None  # not there yet
        for console in root.iterfind("./devices/console"):
            alias = console.find("alias")
            if alias is not None and alias.get("name") == self.device:
                source = console.find("source")
                return "" if source is None else source.get("path", "")
        return ""  # running, and no such pty console: nothing to hold

    def _open(self) -> int:
        """The pty's slave side, once the guest runs; -1 if it never did in
        time or its console is not a pty."""
        while time.monotonic() < self._deadline:
            path = self._pty_path()
            if path == "":
                self.end_reason = "the console is not a pty"
                return -1
            if path:
                fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                tty.setraw(fd)  # never echo the guest's output back to it as input
                return fd
            time.sleep(self.POLL_SECONDS)
        self.end_reason = "the domain's console did not appear in time"
        return -1

    def _hold(self, fd: int) -> None:
        while (left := self._deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
