"""ConsoleStream's hand-over of output to the asyncio loop, without libvirt:
a fake stream plays libvirt's side (the readiness callback and recv)."""

from __future__ import annotations

import asyncio
from collections import deque

import libvirt

from vms.hypervisor import console
from vms.hypervisor.console import ConsoleStream
from vms.hypervisor.host import Host


class FakeStream:
    """What _libvirt_event reads: queued pieces, then 'would block' (-2)."""

    def __init__(self) -> None:
        self.pieces: deque[bytes] = deque()
        self.events: list[int] = []

    def recv(self, size: int) -> bytes | int:
        return self.pieces.popleft() if self.pieces else -2

    def eventUpdateCallback(self, events: int) -> None:
        self.events.append(events)

    def eventRemoveCallback(self) -> None:
        pass

    def abort(self) -> None:
        pass


def open_stream() -> tuple[ConsoleStream, FakeStream, list[bytes]]:
    delivered: list[bytes] = []
    stream = ConsoleStream(
        Host("test:///default"),
        "uuid",
        "console0",
        loop=asyncio.get_running_loop(),
        on_data=delivered.append,
        on_closed=lambda info: None,
    )
    fake = FakeStream()
    stream._stream = fake
    return stream, fake, delivered


def guest_writes(stream: ConsoleStream, fake: FakeStream, piece: bytes) -> None:
    fake.pieces.append(piece)
    stream._libvirt_event(fake, libvirt.VIR_STREAM_EVENT_READABLE, None)


async def test_interactive_output_is_handed_over_at_once() -> None:
    stream, fake, delivered = open_stream()
    for key in (b"l", b"s", b"\r\n", b"file-a  file-b\r\n# "):
        guest_writes(stream, fake, key)
        await asyncio.sleep(0)  # one turn of the loop, no timer
        assert delivered[-1] == key
        await asyncio.sleep(console.QUIET_SECONDS)
    assert fake.events == []  # libvirt was never told to hold back


async def test_a_burst_is_batched_in_order_and_reading_resumes() -> None:
    stream, fake, delivered = open_stream()
    pieces = [f"{i:05d} base64-ish line of output\n".encode() for i in range(2000)]
    for i, piece in enumerate(pieces):
        guest_writes(stream, fake, piece)
        if i % 20 == 0:
            await asyncio.sleep(0.001)  # the guest keeps writing while the loop runs
    await asyncio.sleep(2 * console.BATCH_SECONDS)
    assert b"".join(delivered) == b"".join(pieces)  # nothing lost, nothing reordered
    # Far fewer hand-overs (websocket frames) than pieces once the burst began.
    assert len(delivered) < len(pieces) / 10, len(delivered)
    # While a batch gathered, libvirt's callbacks were paused; now they are back.
    assert 0 in fake.events
    assert fake.events[-1] == console._EVENTS


async def test_a_pause_after_a_burst_makes_the_console_interactive_again() -> None:
    stream, fake, delivered = open_stream()
    for _ in range(200):
        guest_writes(stream, fake, b"x" * 64)
        await asyncio.sleep(0)
    await asyncio.sleep(console.BATCH_SECONDS + console.QUIET_SECONDS)
    count = len(delivered)
    guest_writes(stream, fake, b"# ")
    await asyncio.sleep(0)
    assert len(delivered) == count + 1
    assert delivered[-1] == b"# "


async def test_no_delivery_after_close() -> None:
    stream, fake, delivered = open_stream()
    for _ in range(200):
        guest_writes(stream, fake, b"y" * 64)
        await asyncio.sleep(0)
    stream.close()
    count = len(delivered)
    await asyncio.sleep(2 * console.BATCH_SECONDS)
    assert len(delivered) == count
