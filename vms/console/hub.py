"""One console hub per VM per web process: the single libvirt console stream
of the VM, fanned out to every viewer connected to this process.

Data path (no Redis, no copies beyond one bytes object per chunk):

    guest hvc0 -> libvirt stream -> ConsoleHub.feed -> Viewer queues -> websocket

Memory is bounded per VM and per viewer, whatever the guest does:
- libvirt's client library queues stream data without limit when it is not
  read, so the hub always drains the stream (it never pauses it);
- each viewer has a queue of at most VIEWER_QUEUE_BYTES; a viewer that
  cannot keep up (slow network, a browser busy rendering a flood) has the
  excess dropped and is told how many bytes it missed;
- the scrollback is a ring of CONSOLE_SCROLLBACK_BYTES;
- a recording is capped in size (recording.py);
- the websocket transport holds at most uvicorn's write high-water mark
  (64 KiB) beyond that queue: uvicorn's websockets-sansio ``send`` waits
  until the transport drains, so a viewer that stops reading blocks its own
  sender, and its queue drops the oldest output (tests/integration/
  test_console_transport.py proves the bound with a real server);
- each VM admits CONSOLE_RW_SESSIONS_PER_VM read-write sockets and
  CONSOLE_RO_SESSIONS_PER_VM read-only ones (``take_seat``);
- keystrokes wait for the guest in a queue of at most
  CONSOLE_INPUT_PENDING_MAX_BYTES, sent by a thread (hypervisor/console.py);
  a frame past it is refused and the viewer told ("input-dropped");
- one resize at a time reaches the guest, the latest size wins.
The guest is therefore never slowed down by a viewer, and Ctrl-C reaches it
at once (input has its own path) and shows up after at most one queue of
output.

Several web processes: libvirt allows one console client per domain, and a
new client takes it with FORCE. The hub that loses its stream tells its
viewers (close code CONSOLE_MOVED) instead of leaving them hung; their pages
reconnect. Deployments with more than one web process route
``/ws/vms/<id>/`` by VM id to one process (see README, "Consoles behind a
proxy"), so all viewers of a VM share one hub and hand-overs only happen when
a process restarts.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from vms.console.protocol import CloseCode
from vms.hypervisor.agent import GuestAgent
from vms.hypervisor.console import ConsoleStream, StreamClosed
from vms.hypervisor.domain import KERNEL_CONSOLE, SHELL_CONSOLE
from vms.hypervisor.errors import HypervisorError
from vms.hypervisor.host import Host

log = logging.getLogger(__name__)

FRAME_MAX = 64 * 1024  # largest websocket frame we send
VIEWER_QUEUE_BYTES = 512 * 1024
KERNEL_SCROLLBACK = 64 * 1024
RESIZE_SETTLE_SECONDS = 0.15  # a burst of resizes (a window dragged) settles first


@dataclass(frozen=True)
class _Close:
    code: CloseCode


def _control_size(message: dict[str, Any]) -> int:
    """What a control message counts against a viewer's queue bound."""
    return len(str(message.get("data", ""))) + 64


class Viewer:
    """One websocket's view of a hub: a bounded queue and a sender task.

    ``send_bytes``/``send_json``/``close`` are the consumer's coroutines. With
    acknowledged flow control (the page opts in with a window), at most
    ``window`` bytes are in flight between acks, so a busy browser is not
    buried under output it cannot render.
    """

    def __init__(
        self,
        *,
        read_only: bool,
        send_bytes: Callable[[bytes], Awaitable[None]],
        send_json: Callable[[dict[str, Any]], Awaitable[None]],
        close: Callable[[CloseCode], Awaitable[None]],
    ) -> None:
        self.read_only = read_only
        self._send_bytes = send_bytes
        self._send_json = send_json
        self._close = close
        self._queue: deque[bytes | dict[str, Any] | _Close] = deque()
        self._queued = 0
        self.skipped = 0
        self.input_dropped = 0
        self.window: int | None = None
        self.unacked = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sender())

    async def stop(self) -> None:
        """Stop sending. Never raises: the socket may already be gone (a send
        to a closed websocket fails), and the caller still has its session to
        record as ended."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # the peer went away mid-send
                log.debug("console viewer's sender ended with %r", exc)

    def offer(self, data: bytes) -> None:
        """Queue output for this viewer. Past the bound, the *oldest* queued
        output goes (and is reported skipped when sending resumes): a viewer
        that stalled comes back to what the guest shows now, not to the
        start of a flood."""
        if len(data) > VIEWER_QUEUE_BYTES:
            self.skipped += len(data) - VIEWER_QUEUE_BYTES
            data = data[-VIEWER_QUEUE_BYTES:]
        self._queue.append(data)
        self._queued += len(data)
        while self._queued > VIEWER_QUEUE_BYTES:
            head = self._queue[0]
            if isinstance(head, bytes):
                self.skipped += len(head)
                self._queued -= len(head)
            elif isinstance(head, dict) and head.get("type") == "kernel":
                self._queued -= _control_size(head)  # kernel text is also in the kernel log
            else:
                break  # "closing" and the close itself stay; nothing is offered after them
            self._queue.popleft()
        self._wake.set()

    def offer_control(self, message: dict[str, Any]) -> None:
        size = _control_size(message)
        if self._queued + size > VIEWER_QUEUE_BYTES and message.get("type") == "kernel":
            return  # kernel text is also in the kernel log; never block on it
        self._queue.append(message)
        self._queued += size
        self._wake.set()

    def note_input_dropped(self, count: int) -> None:
        """Keystrokes the guest could not take; the viewer is told once
        sending resumes (one notice for a burst, not one per frame)."""
        self.input_dropped += count
        self._wake.set()

    def set_window(self, window: int) -> None:
        self.window = max(FRAME_MAX, min(window, 16 * 1024 * 1024))
        self._wake.set()

    def ack(self, count: int) -> None:
        self.unacked = max(0, self.unacked - max(0, count))
        self._wake.set()

    def end(self, code: CloseCode) -> None:
        """The hub is gone: flush what is queued, then close with ``code``."""
        self.offer_control({"type": "closing", "code": int(code), "reason": code.reason})
        self._queue.append(_Close(code))
        self._wake.set()

    def _can_send(self) -> bool:
        return self.window is None or self.unacked < self.window

    async def _send_notices(self) -> None:
        if self.skipped:
            skipped, self.skipped = self.skipped, 0
            await self._send_json({"type": "skipped", "bytes": skipped})
        if self.input_dropped:
            dropped, self.input_dropped = self.input_dropped, 0
            await self._send_json({"type": "input-dropped", "bytes": dropped})

    async def _sender(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if self.input_dropped:
                await self._send_notices()
            while self._queue and self._can_send():
                await self._send_notices()
                item = self._queue.popleft()
                if isinstance(item, _Close):
                    await self._close(item.code)
                    return
                if isinstance(item, dict):
                    self._queued -= _control_size(item)
                    await self._send_json(item)
                    continue
                # Coalesce queued output into frames of up to FRAME_MAX.
                parts = [item]
                size = len(item)
                while (
                    self._queue
                    and isinstance(self._queue[0], bytes)
                    and size + len(self._queue[0]) <= FRAME_MAX
                ):
                    nxt = self._queue.popleft()
                    assert isinstance(nxt, bytes)
                    parts.append(nxt)
                    size += len(nxt)
                self._queued -= size
                await self._send_bytes(b"".join(parts) if len(parts) > 1 else item)
                self.unacked += size


def _tail_from_line(data: bytes) -> bytes:
    """Start a scrollback at a line boundary, not inside an escape sequence."""
    cut = data.find(b"\n")
    return data[cut + 1 :] if 0 <= cut < len(data) - 1 else data


def read_log_tail(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            length = handle.tell()
            handle.seek(max(0, length - size))
            data = handle.read(size)
    except OSError:
        return b""
    return _tail_from_line(data) if length > size else data


class ConsoleHub:
    def __init__(
        self,
        *,
        vm_id: str,
        domain_uuid: str,
        host: Host,
        scrollback_seed: bytes = b"",
        on_gone: Callable[[ConsoleHub], None] | None = None,
    ) -> None:
        self.vm_id = vm_id
        self.domain_uuid = domain_uuid
        self.host = host
        self.limit = int(settings.CONSOLE_SCROLLBACK_BYTES)
        self.scrollback = bytearray(scrollback_seed[-self.limit :])
        self.kernel_scrollback = ""
        self.viewers: set[Viewer] = set()
        self.recorders: dict[Viewer, Any] = {}
        self.bytes_out = 0
        self._on_gone = on_gone
        self._loop = asyncio.get_running_loop()
        self._linger: asyncio.TimerHandle | None = None
        self._resizer: asyncio.Task[None] | None = None
        self._wanted_size: tuple[int, int] | None = None
        self._seats = {True: 0, False: 0}  # taken, by read_only
        self._kernel_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.closed = False
        self.shell = ConsoleStream(
            host,
            domain_uuid,
            SHELL_CONSOLE,
            loop=self._loop,
            on_data=self.feed,
            on_closed=self._shell_closed,
            private_connection=True,  # its input may get stuck (see ConsoleStream)
            input_max=int(settings.CONSOLE_INPUT_PENDING_MAX_BYTES),
        )
        self.kernel = ConsoleStream(
            host,
            domain_uuid,
            KERNEL_CONSOLE,
            loop=self._loop,
            on_data=self._kernel_output,
            on_closed=lambda _info: None,  # kernel pane is best effort
        )

    async def open(self) -> None:
        await self.shell.open()
        try:
            await self.kernel.open()
        except HypervisorError:
            log.warning("kernel console of %s unavailable", self.vm_id, exc_info=True)

    # -- output --

    def feed(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.scrollback += data
        if len(self.scrollback) > 2 * self.limit:  # trim in bulk: amortised O(1)
            del self.scrollback[: len(self.scrollback) - self.limit]
        for viewer in self.viewers:
            viewer.offer(data)
        for recorder in self.recorders.values():
            recorder.output(data)

    def _kernel_output(self, data: bytes) -> None:
        text = self._kernel_decoder.decode(data)
        if not text:
            return
        self.kernel_scrollback = (self.kernel_scrollback + text)[-KERNEL_SCROLLBACK:]
        for viewer in self.viewers:
            viewer.offer_control({"type": "kernel", "data": text})

    # -- viewers --

    def take_seat(self, *, read_only: bool) -> bool:
        """Reserve a place for one more socket, or False when the VM has as
        many as it may (CONSOLE_RW/RO_SESSIONS_PER_VM). Synchronous, so two
        sockets arriving together cannot both take the last seat."""
        limit = (
            settings.CONSOLE_RO_SESSIONS_PER_VM
            if read_only
            else settings.CONSOLE_RW_SESSIONS_PER_VM
        )
        if self._seats[read_only] >= limit:
            return False
        self._seats[read_only] += 1
        return True

    def release_seat(self, *, read_only: bool) -> None:
        self._seats[read_only] = max(0, self._seats[read_only] - 1)

    def recording_bytes(self) -> int:
        """What the recordings open on this hub have written so far."""
        return sum(int(recorder.written) for recorder in self.recorders.values())

    def join(self, viewer: Viewer, recorder: Any = None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.kernel_scrollback:
            viewer.offer_control({"type": "kernel", "data": self.kernel_scrollback})
        if self.scrollback:
            viewer.offer(_tail_from_line(bytes(self.scrollback[-self.limit :])))
        self.viewers.add(viewer)
        if recorder is not None:
            self.recorders[viewer] = recorder

    def leave(self, viewer: Viewer) -> Any:
        self.viewers.discard(viewer)
        recorder = self.recorders.pop(viewer, None)
        if not self.viewers and not self.closed:
            # Keep the stream a little: a reload or a network blip reconnects
            # to the same scrollback without reopening libvirt's console.
            self._linger = self._loop.call_later(
                settings.CONSOLE_LINGER_SECONDS, self.close, CloseCode.CONSOLE_LOST
            )
        return recorder

    # -- input --

    def input(self, data: bytes) -> bool:
        """Queue keystrokes; False when the guest has too many waiting."""
        return self.shell.write(data)

    def resize(self, cols: int, rows: int) -> None:
        """Tell the guest's tty its size, so full-screen programs draw right.

        The virtio console has no size of its own; setting the tty's winsize
        with stty makes the kernel send SIGWINCH to the foreground program.
        That is a guest-agent call (up to seconds) on a thread of the pool
        that console opens and log reads share, so one console has at most
        one in flight: a storm of resizes costs one thread, and the guest
        gets the latest size once the storm settles.
        """
        for recorder in self.recorders.values():
            recorder.resize(cols, rows)
        self._wanted_size = (cols, rows)
        if self._resizer is None or self._resizer.done():
            self._resizer = self._loop.create_task(self._apply_sizes())

    async def _apply_sizes(self) -> None:
        applied: tuple[int, int] | None = None
        while not self.closed:
            await asyncio.sleep(RESIZE_SETTLE_SECONDS)
            size = self._wanted_size
            if size is None or size == applied:
                return
            try:
                await asyncio.to_thread(self.set_tty_size, *size)
            except HypervisorError as exc:
                log.info("could not resize the console of %s: %s", self.vm_id, exc)
            applied = size

    def set_tty_size(self, cols: int, rows: int) -> None:
        """Blocking: the guest agent runs stty on the shell's console."""
        argv = ["stty", "-F", "/dev/hvc0", "rows", str(rows), "cols", str(cols)]
        guest = self.host.lookup_uuid(self.domain_uuid)
        GuestAgent(guest, call_timeout=5).exec(argv, timeout=5)

    # -- the end --

    def _shell_closed(self, info: StreamClosed) -> None:
        log.info("console of %s ended: %s", self.vm_id, info.reason)
        self.close(CloseCode.CONSOLE_MOVED if info.taken_over else CloseCode.CONSOLE_LOST)

    def close(self, code: CloseCode) -> None:
        if self.closed:
            return
        self.closed = True
        if self._linger is not None:
            self._linger.cancel()
        self.shell.close()
        self.kernel.close()
        for viewer in list(self.viewers):
            viewer.end(code)
        if self._on_gone is not None:
            self._on_gone(self)


class HubRegistry:
    """The hubs of one event loop (one web process), by VM id."""

    def __init__(self) -> None:
        self.hubs: dict[str, ConsoleHub] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(
        self,
        *,
        vm_id: str,
        domain_uuid: str,
        host: Host,
        scrollback: Callable[[], bytes] | None = None,
    ) -> ConsoleHub:
        """The VM's hub, opened if needed; a new hub starts with what
        ``scrollback`` reads (in a thread: it may read a file or wait for
        the lab's host, vms.guest_logs)."""
        lock = self._locks.setdefault(vm_id, asyncio.Lock())
        async with lock:
            hub = self.hubs.get(vm_id)
            if hub is not None and not hub.closed and hub.domain_uuid == domain_uuid:
                return hub
            if hub is not None:
                hub.close(CloseCode.CONSOLE_LOST)
            seed = await asyncio.to_thread(scrollback) if scrollback is not None else b""
            hub = ConsoleHub(
                vm_id=vm_id,
                domain_uuid=domain_uuid,
                host=host,
                scrollback_seed=seed,
                on_gone=self._forget,
            )
            await hub.open()
            self.hubs[vm_id] = hub
            return hub

    def _forget(self, hub: ConsoleHub) -> None:
        if self.hubs.get(hub.vm_id) is hub:
            del self.hubs[hub.vm_id]


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HubRegistry] = (
    weakref.WeakKeyDictionary()
)


def hubs() -> HubRegistry:
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = HubRegistry()
    return registry
