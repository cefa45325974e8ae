"""The console hub's memory bounds and fan-out, fed directly (no libvirt):
a 50 MB flood through a hub with a fast viewer and a stalled one."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from tests.conftest import World
from vms import services
from vms.console import access
from vms.console.housekeeping import console_housekeeping
from vms.console.hub import VIEWER_QUEUE_BYTES, ConsoleHub, Viewer, read_log_tail
from vms.console.protocol import CloseCode
from vms.console.recording import CastWriter
from vms.hypervisor.host import Host
from vms.models import ConsoleSession, ConsoleToken

FLOOD = 50 * 1024 * 1024
CHUNK = 16 * 1024


class Sink:
    def __init__(self, stalled: bool = False) -> None:
        self.bytes = 0
        self.controls: list[dict[str, Any]] = []
        self.closed: CloseCode | None = None
        self.gate = asyncio.Event()
        if not stalled:
            self.gate.set()

    async def send_bytes(self, data: bytes) -> None:
        await self.gate.wait()
        self.bytes += len(data)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.gate.wait()
        self.controls.append(message)

    async def close(self, code: CloseCode) -> None:
        self.closed = code

    def viewer(self, read_only: bool = False) -> Viewer:
        return Viewer(
            read_only=read_only,
            send_bytes=self.send_bytes,
            send_json=self.send_json,
            close=self.close,
        )


def hub() -> ConsoleHub:
    # Never opened: the test plays the libvirt stream by calling feed().
    return ConsoleHub(vm_id="v", domain_uuid="d", host=Host("test:///default"))


async def test_a_flood_keeps_memory_bounded_and_fast_viewers_complete() -> None:
    console = hub()
    fast, stalled = Sink(), Sink(stalled=True)
    fast_viewer, stalled_viewer = fast.viewer(), stalled.viewer(read_only=True)
    for viewer in (fast_viewer, stalled_viewer):
        console.join(viewer)
        viewer.start()
    chunk = b"y\n" * (CHUNK // 2)
    tracemalloc.start()
    try:
        for sent in range(0, FLOOD, CHUNK):
            console.feed(chunk)
            if sent % (8 * CHUNK) == 0:
                await asyncio.sleep(0)  # the fast viewer's sender runs
        await asyncio.sleep(0.05)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Scrollback (2x its size before a trim) + one viewer queue + frames in flight.
    assert peak < 2 * console.limit + 2 * VIEWER_QUEUE_BYTES + 1024 * 1024, peak
    assert fast.bytes == FLOOD
    assert stalled_viewer.queued_bytes <= VIEWER_QUEUE_BYTES
    stalled_skipped = stalled_viewer.skipped
    assert stalled_skipped >= FLOOD - VIEWER_QUEUE_BYTES - CHUNK  # one chunk is in flight
    # Once it reads again it is told how much it missed, then gets the rest.
    stalled.gate.set()
    console.feed(b"after\n")
    await asyncio.sleep(0.05)
    skipped = [c for c in stalled.controls if c["type"] == "skipped"]
    assert skipped
    assert skipped[0]["bytes"] >= stalled_skipped
    for viewer in (fast_viewer, stalled_viewer):
        await viewer.stop()


async def test_a_stalled_viewer_comes_back_to_the_newest_output() -> None:
    received: list[bytes | dict[str, Any]] = []
    gate = asyncio.Event()

    async def send_bytes(data: bytes) -> None:
        await gate.wait()
        received.append(data)

    async def send_json(message: dict[str, Any]) -> None:
        await gate.wait()
        received.append(message)

    async def close(code: CloseCode) -> None:
        pass

    viewer = Viewer(read_only=True, send_bytes=send_bytes, send_json=send_json, close=close)
    viewer.start()
    for i in range(200):  # 1.5 MB of flood while the viewer does not read
        viewer.offer(f"[chunk {i}]".encode() + b"flood line\n" * 700)
        assert viewer.queued_bytes <= VIEWER_QUEUE_BYTES
    viewer.offer(b"prompt$ ")
    gate.set()
    await asyncio.sleep(0.05)
    # The first frame was already on its way when the viewer stalled; then the
    # notice of what was dropped, then the newest output, ending with the prompt.
    skipped = [m for m in received if isinstance(m, dict) and m["type"] == "skipped"]
    assert len(skipped) == 1
    assert skipped[0]["bytes"] > 1_000_000
    after = received[received.index(skipped[0]) + 1 :]
    newest = b"".join(m for m in after if isinstance(m, bytes))
    assert b"[chunk 199]" in newest
    assert b"[chunk 100]" not in newest
    assert newest.endswith(b"flood line\nprompt$ ")
    await viewer.stop()


async def test_acknowledged_flow_control_limits_bytes_in_flight() -> None:
    sink = Sink()
    viewer = sink.viewer()
    viewer.set_window(128 * 1024)
    viewer.start()
    for _ in range(64):
        viewer.offer(b"x" * 8192)  # 512 KiB offered
    await asyncio.sleep(0.02)
    assert sink.bytes == 128 * 1024  # the window, and not a byte more
    viewer.ack(64 * 1024)
    await asyncio.sleep(0.02)
    assert sink.bytes == 192 * 1024
    await viewer.stop()


async def test_late_joiner_gets_scrollback_from_a_line_boundary() -> None:
    console = hub()
    console.feed(b"x" * (console.limit - 10) + b"\x1b[31mred line\nprompt$ ")
    sink = Sink()
    viewer = sink.viewer()
    console.join(viewer)
    viewer.start()
    await asyncio.sleep(0.02)
    assert sink.bytes == len(b"prompt$ ")  # cut at the newline, not mid-escape
    await viewer.stop()


async def test_stopping_a_viewer_whose_socket_is_gone_does_not_raise() -> None:
    # The browser closed while output was on its way: the last send fails
    # (uvicorn raises ClientDisconnected). The consumer still has to record
    # the end of its session after stop(), so stop() must not re-raise.
    class Gone(Exception):
        pass

    async def send_bytes(data: bytes) -> None:
        raise Gone

    sink = Sink()
    viewer = Viewer(
        read_only=False, send_bytes=send_bytes, send_json=sink.send_json, close=sink.close
    )
    viewer.start()
    viewer.offer(b"output nobody will read")
    await asyncio.sleep(0.02)
    assert viewer._task is not None
    assert viewer._task.done()  # died of the failed send
    await viewer.stop()


async def test_end_of_hub_flushes_then_closes_viewers() -> None:
    console = hub()
    sink = Sink()
    viewer = sink.viewer()
    console.join(viewer)
    viewer.start()
    console.feed(b"last words")
    console.close(CloseCode.CONSOLE_MOVED)
    await asyncio.sleep(0.02)
    assert sink.bytes == len(b"last words")
    assert sink.controls[-1]["code"] == CloseCode.CONSOLE_MOVED
    assert sink.closed == CloseCode.CONSOLE_MOVED


def test_recording_is_valid_asciicast_and_capped(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    writer = CastWriter(path, cols=80, rows=24, max_bytes=64 * 1024, title="t")
    writer.output("héllo ".encode()[:2])  # a UTF-8 sequence split across chunks
    writer.output("héllo ".encode()[2:])
    writer.resize(100, 30)
    for _ in range(10_000):
        writer.output(b"flood flood flood\r\n")
    writer.close()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2
    events = [json.loads(line) for line in lines[1:]]
    assert "".join(e[2] for e in events[:2] if e[1] == "o").startswith("héllo")
    assert [int(n) for n in events[2][2].split("x")] == [100, 30]
    assert writer.truncated
    assert "size limit" in events[-1][2]
    assert path.stat().st_size < 64 * 1024 + 200


def test_log_tail_starts_at_a_line(tmp_path: Path) -> None:
    log = tmp_path / "shell.log"
    log.write_bytes(b"old junk\n" * 1000 + b"recent line\n")
    assert read_log_tail(log, 20) == b"recent line\n"
    assert read_log_tail(tmp_path / "missing.log", 20) == b""


@pytest.mark.django_db
def test_housekeeping_drops_old_recordings_and_spent_tokens(
    world: World, tmp_path: Path, settings: Any
) -> None:
    settings.CONSOLE_RECORDING_RETENTION_DAYS = 30
    with mock.patch("celery.app.task.Task.apply_async"):
        vm = services.lab_start(user=world.alice, assignment=world.hello)
    old_file, new_file = tmp_path / "old.cast", tmp_path / "new.cast"
    old_file.write_text("{}\n")
    new_file.write_text("{}\n")
    now = timezone.now()
    ConsoleSession.objects.create(
        vm=vm,
        user=world.alice,
        mode="rw",
        recording=str(old_file),
        started_at=now - timedelta(days=31),
    )
    kept = ConsoleSession.objects.create(
        vm=vm,
        user=world.alice,
        mode="rw",
        recording=str(new_file),
        started_at=now - timedelta(days=29),
    )
    access.console_token_issue(user=world.alice, vm=vm)
    ConsoleToken.objects.update(expires_at=now - timedelta(hours=2))
    assert console_housekeeping() == {"tokens": 1, "sessions": 1}
    assert not old_file.exists()
    assert new_file.exists()
    assert list(ConsoleSession.objects.all()) == [kept]
