"""What one student can make a web process hold through a console, without
libvirt: stuck input, resize storms, recordings, open sockets per VM."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tests.conftest import World
from vms import services
from vms.console import hub as hub_module
from vms.console.hub import ConsoleHub, Viewer
from vms.console.protocol import CloseCode
from vms.console.recording import CastWriter, recording_budget
from vms.hypervisor.console import ConsoleStream
from vms.hypervisor.host import Host
from vms.models import ConsoleSession


class StuckStream:
    """A libvirt stream whose send blocks until the guest reads again, as
    libvirt's remote client does when the guest stops reading its console."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.sent = bytearray()
        self.aborted = threading.Event()

    def send(self, data: bytes) -> int:
        self.reading.wait()
        self.sent += data
        return len(data)

    def eventRemoveCallback(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted.set()


def stream_with(fake: StuckStream, input_max: int) -> ConsoleStream:
    stream = ConsoleStream(
        Host("test:///default"),
        "uuid",
        "console0",
        loop=asyncio.get_running_loop(),
        on_data=lambda data: None,
        on_closed=lambda info: None,
        input_max=input_max,
    )
    stream._stream = fake
    return stream


async def test_input_for_a_guest_that_does_not_read_never_blocks_the_loop() -> None:
    fake = StuckStream()
    stream = stream_with(fake, input_max=256 * 1024)
    frame = b"x" * 64 * 1024
    started = time.monotonic()
    accepted = [stream.write(frame) for _ in range(8)]
    assert time.monotonic() - started < 0.1  # the loop was never the one waiting
    assert accepted == [True] * 4 + [False] * 4  # capped at input_max
    assert stream.pending_input == 256 * 1024
    fake.reading.set()  # the guest reads again: what was accepted arrives, in order
    for _ in range(100):
        if stream.pending_input == 0:
            break
        await asyncio.sleep(0.01)
    assert bytes(fake.sent) == frame * 4
    assert stream.write(b"more")  # and input flows again
    stream.close()


async def test_closing_a_stuck_console_returns_at_once_and_aborts_later() -> None:
    fake = StuckStream()
    stream = stream_with(fake, input_max=256 * 1024)
    stream.write(b"keys nobody reads")
    await asyncio.sleep(0.05)  # the writer thread is inside send()
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 0.05
    assert not fake.aborted.is_set()  # the abort waits behind the stuck send...
    fake.reading.set()
    assert await asyncio.to_thread(fake.aborted.wait, 5)  # ...then runs, off the loop
    assert not stream.write(b"after close")


class Sink:
    def __init__(self) -> None:
        self.controls: list[dict[str, Any]] = []

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def send_json(self, message: dict[str, Any]) -> None:
        self.controls.append(message)

    async def close(self, code: CloseCode) -> None:
        pass


async def test_dropped_input_is_reported_once_per_burst() -> None:
    sink = Sink()
    viewer = Viewer(
        read_only=False, send_bytes=sink.send_bytes, send_json=sink.send_json, close=sink.close
    )
    viewer.start()
    for _ in range(50):
        viewer.note_input_dropped(64 * 1024)
    await asyncio.sleep(0.02)
    assert sink.controls == [{"type": "input-dropped", "bytes": 50 * 64 * 1024}]
    await viewer.stop()


def unopened_hub() -> ConsoleHub:
    return ConsoleHub(vm_id="v", domain_uuid="d", host=Host("test:///default"))


async def test_a_resize_storm_keeps_one_resize_in_flight_and_applies_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "RESIZE_SETTLE_SECONDS", 0.01)
    console = unopened_hub()
    in_flight = 0
    most = 0
    applied: list[tuple[int, int]] = []
    lock = threading.Lock()

    def slow_stty(cols: int, rows: int) -> None:  # a guest-agent call takes a while
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
            applied.append((cols, rows))

    monkeypatch.setattr(console, "set_tty_size", slow_stty)
    for step in range(200):  # a window dragged for two seconds
        console.resize(80 + step % 50, 24 + step % 20)
        await asyncio.sleep(0.01)
    console.resize(132, 43)
    for _ in range(100):
        if applied and applied[-1] == (132, 43):
            break
        await asyncio.sleep(0.02)
    assert most == 1
    assert applied[-1] == (132, 43)
    assert len(applied) < 60  # far fewer agent calls than resizes
    console.close(CloseCode.CONSOLE_LOST)


async def test_sockets_per_vm_are_capped_by_kind(settings: Any) -> None:
    settings.CONSOLE_RW_SESSIONS_PER_VM = 4
    settings.CONSOLE_RO_SESSIONS_PER_VM = 2
    console = unopened_hub()
    assert [console.take_seat(read_only=False) for _ in range(5)] == [True] * 4 + [False]
    assert [console.take_seat(read_only=True) for _ in range(3)] == [True, True, False]
    console.release_seat(read_only=False)
    assert console.take_seat(read_only=False)
    console.close(CloseCode.CONSOLE_LOST)


def cast_events(path: Path) -> list[list[Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


@pytest.mark.parametrize(
    "flood",
    [b"\xff\xfe" * 512, b"\x01\x02\x1b" * 512, "ünïcödé ".encode() * 100],
    ids=["invalid-utf8", "control-bytes", "multibyte"],
)
def test_a_recording_is_capped_in_bytes_on_disk(tmp_path: Path, flood: bytes) -> None:
    path = tmp_path / "s.cast"
    cap = 64 * 1024
    writer = CastWriter(path, cols=80, rows=24, max_bytes=cap, title="t", limit="the limit")
    for _ in range(4 * 1024 * 1024 // len(flood)):  # 4 MiB of output
        writer.output(flood)
    writer.close()
    size = path.stat().st_size
    assert writer.written == size
    assert cap - 4096 < size <= cap
    assert writer.truncated
    assert cast_events(path)[-1][2] == "\r\n[recording stopped: the limit was reached]\r\n"


def test_a_recording_with_no_budget_left_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    writer = CastWriter(path, cols=80, rows=24, max_bytes=0, title="t", limit="your quota")
    writer.output(b"anything")
    writer.close()
    assert [e[2] for e in cast_events(path)] == [
        "\r\n[recording stopped: your quota was reached]\r\n"
    ]


@pytest.mark.django_db
def test_recording_budget_is_what_is_left_per_session_vm_and_user(
    world: World, settings: Any
) -> None:
    settings.CONSOLE_RECORDING_MAX_BYTES = 16 * 1024 * 1024
    settings.CONSOLE_RECORDING_VM_MAX_BYTES = 64 * 1024 * 1024
    settings.CONSOLE_RECORDING_USER_MAX_BYTES = 100 * 1024 * 1024
    with mock.patch("celery.app.task.Task.apply_async"):
        vm = services.lab_start(user=world.alice, assignment=world.hello)
    mib = 1024 * 1024
    assert recording_budget(vm=vm, user=world.alice) == (16 * mib, "the session's recording limit")
    ConsoleSession.objects.create(vm=vm, user=world.alice, mode="rw", recorded_bytes=60 * mib)
    assert recording_budget(vm=vm, user=world.alice) == (4 * mib, "this VM's recording quota")
    assert recording_budget(vm=vm, user=world.alice, live_bytes=5 * mib)[0] == 0
    settings.CONSOLE_RECORDING_USER_MAX_BYTES = 62 * 1024 * 1024  # her other labs used it
    assert recording_budget(vm=vm, user=world.alice) == (2 * mib, "your recording quota")
