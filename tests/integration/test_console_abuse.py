"""Hostile students against the console (issue 15), with real guests on
libvirt/QEMU and the real site under uvicorn in its own process:

- a viewer that completes the handshake and never reads while the guest
  floods its console does not grow the web process;
- a guest that stops reading its console while fed input does not freeze the
  web process: another VM's console keeps echoing at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from asgiref.sync import sync_to_async
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from tests.conftest import World
from tests.integration.test_vm_lifecycle import started
from tests.support.console_client import ConsoleClient, _session_cookie
from tests.support.processes import asgi_server_process, rss_mib
from vms import lifecycle, services
from vms.console.access import console_token_issue
from vms.console.protocol import SUBPROTOCOL
from vms.models import LabVM

pytestmark = [pytest.mark.libvirt, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

FLOOD_RSS_BOUND_MIB = 64
FLOOD_SECONDS = 15


class RawViewer:
    """A websocket client on a plain socket that does the handshake, reads the
    hello, and then reads nothing until told to: a hostile (or frozen) browser.
    Its receive buffer is small, so the server cannot hide what it buffers in
    the client's kernel."""

    def __init__(self, base_url: str, vm: LabVM, token: str, cookie: str) -> None:
        netloc = urlparse(base_url).netloc
        host, port = netloc.split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.connect((host, int(port)))
        self.protocol = ClientProtocol(
            parse_uri(f"ws://{netloc}/ws/vms/{vm.pk}/console/"),
            subprotocols=[SUBPROTOCOL, f"token.{token}"],  # type: ignore[list-item]
            max_size=None,
        )
        request = self.protocol.connect()
        request.headers["Cookie"] = cookie
        request.headers["Origin"] = base_url
        self.protocol.send_request(request)
        self._flush()
        self.binary = 0
        self.tail = bytearray()
        self.controls: list[dict[str, Any]] = []
        self.closed_with: int | None = None
        hello = self._next_control(timeout=15)
        assert hello.get("type") == "hello", hello

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def _pump(self, timeout: float) -> bool:
        """Read once from the socket; False at end of stream."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(256 * 1024)
        if not data:
            self.protocol.receive_eof()
            return False
        self.protocol.receive_data(data)
        self._flush()  # pongs, close replies
        for event in self.protocol.events_received():
            if not isinstance(event, Frame):
                continue  # the handshake response
            if event.opcode == Opcode.BINARY or event.opcode == Opcode.CONT:
                self.binary += len(event.data)
                self.tail += event.data
                del self.tail[: max(0, len(self.tail) - 64 * 1024)]
            elif event.opcode == Opcode.TEXT:
                self.controls.append(json.loads(event.data))
            elif event.opcode == Opcode.CLOSE:
                self.closed_with = int.from_bytes(event.data[:2], "big") if event.data else 1005
        return True

    def _next_control(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.controls:
            if not self._pump(max(0.01, deadline - time.monotonic())):
                raise AssertionError("closed before the hello")
        return self.controls.pop(0)

    def read_until(self, needle: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.tail:
            if self.closed_with is not None:
                raise AssertionError(f"closed ({self.closed_with}) before {needle!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._pump(remaining):
                raise AssertionError(f"{needle!r} not seen; tail {bytes(self.tail[-200:])!r}")

    def close(self) -> None:
        self.sock.close()


async def raw_viewer(base_url: str, vm: LabVM, user: Any) -> RawViewer:
    token = await sync_to_async(console_token_issue)(user=user, vm=vm)
    cookie = await sync_to_async(_session_cookie)(user)
    return await asyncio.to_thread(RawViewer, base_url, vm, token, cookie)


async def run(term: ConsoleClient, command: str, expect: bytes, timeout: float = 30) -> None:
    mark = len(term.output)
    await term.type(command + "\r")
    await term.wait_for(expect, after=mark, timeout=timeout)


async def destroy(vm: LabVM) -> None:
    await sync_to_async(services.lab_destroy)(vm=vm)
    await sync_to_async(lifecycle.destroy)(str(vm.pk))


async def test_a_viewer_that_never_reads_does_not_grow_the_server(
    world: World, vm_dir: Path, tmp_path: Path, no_enqueue: Any
) -> None:
    vm = await sync_to_async(started)(world)
    with asgi_server_process(
        tmp_path, VM_DIR=str(vm_dir), CONSOLE_RECORDING_DIR=str(tmp_path / "rec")
    ) as (url, server):
        owner = await ConsoleClient.open(url, vm, world.alice)
        await run(owner, "echo ready-$((1+1))", b"ready-2")
        frozen = await raw_viewer(url, vm, world.tess)
        baseline = rss_mib(server.popen.pid)
        peak = baseline
        await run(owner, "base64 /dev/urandom", b"\n", timeout=20)
        flood_started = owner.received
        deadline = time.monotonic() + FLOOD_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            peak = max(peak, rss_mib(server.popen.pid))
        flooded = owner.received - flood_started
        await owner.type(b"\x03")
        await run(owner, "echo after-$((2+2))", b"after-4")

        # The frozen viewer reads again and comes to the newest output.
        await asyncio.to_thread(frozen.read_until, b"after-4", 30)
        skipped = sum(c.get("bytes", 0) for c in frozen.controls if c.get("type") == "skipped")
        print(
            f"\nnon-reading viewer under a flood: {flooded} B flooded in {FLOOD_SECONDS}s, "
            f"server RSS {baseline:.1f} -> {peak:.1f} MiB (+{peak - baseline:.1f}), "
            f"the frozen viewer got {frozen.binary} B after resuming, {skipped} B marked skipped"
        )
        # Under TCG a guest floods at ~100 KB/s, less than the kernel's socket
        # buffers hold, so here the bound shows as memory; the drop-and-mark
        # past the buffers is proven at 50 MB in test_console_transport.py.
        assert flooded > 500_000, f"flood too small to mean anything: {flooded} bytes"
        assert peak - baseline < FLOOD_RSS_BOUND_MIB
        frozen.close()
        await owner.close()
    await destroy(vm)


async def echo_latencies(term: ConsoleClient, count: int) -> list[float]:
    """Seconds from a keystroke to its echo, ``count`` times."""
    seconds = []
    for index in range(count):
        char = chr(ord("a") + index % 26).encode()
        mark = len(term.output)
        start = time.monotonic()
        await term.type(char)
        await term.wait_for(char, after=mark, timeout=10)
        seconds.append(time.monotonic() - start)
    await term.type(b"\x15")  # Ctrl-U: forget the typed line
    return seconds


async def test_a_guest_that_stops_reading_input_freezes_no_other_console(
    world: World, vm_dir: Path, tmp_path: Path, no_enqueue: Any
) -> None:
    stuck_vm = await sync_to_async(started)(world)
    other_vm = await sync_to_async(started)(world, "bob")
    with asgi_server_process(
        tmp_path,
        VM_DIR=str(vm_dir),
        CONSOLE_RECORDING_DIR=str(tmp_path / "rec"),
        CONSOLE_LINGER_SECONDS="0",
    ) as (url, _server):
        other = await ConsoleClient.open(url, other_vm, world.bob)
        await run(other, "echo other-$((1+2))", b"other-3")
        before = await echo_latencies(other, 10)

        stuck = await ConsoleClient.open(url, stuck_vm, world.alice)
        await run(stuck, "echo stuck-$((2+3))", b"stuck-5")
        await stuck.type("kill -STOP $$\r")
        await asyncio.sleep(1)
        line = b"x" * 63 + b"\r"
        frame = line * (64 * 1024 // len(line))
        for _ in range(64):  # 4 MiB of input for a tty nobody reads
            await stuck.type(frame)
        during = await echo_latencies(other, 20)
        dropped = [c for c in stuck.controls if c.get("type") == "input-dropped"]

        # Leaving the stuck console (the server closes its stream at once:
        # no linger) does not freeze the process either.
        await stuck.close()
        after = await echo_latencies(other, 10)
        ms = [
            f"{seconds * 1000:.1f} ms"
            for seconds in (
                statistics.median(before),
                statistics.median(during),
                max(during),
                max(after),
            )
        ]
        dropped_bytes = sum(c.get("bytes", 0) for c in dropped)
        print(
            f"\necho latency of another VM's console: p50 {ms[0]} before; p50 {ms[1]}, "
            f"max {ms[2]} while 4 MiB of input were stuck; max {ms[3]} after the stuck "
            f"console was closed; input dropped for the stuck console: {dropped_bytes} B"
        )
        assert max(during) < 1.0
        assert max(after) < 1.0
        assert dropped, "pending input for a guest that does not read was not capped"
        await other.close()
    await destroy(stuck_vm)
    await destroy(other_vm)
