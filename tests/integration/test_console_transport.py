"""The websocket transport's share of a console's memory, at a flood no TCG
guest can produce in test time: a real uvicorn (websockets-sansio, as in
production) serving the real ASGI app in this process, a real hub fed 50 MB
directly (the libvirt side is the only part played), and a raw client that
completes the handshake and then reads nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from labplatform.asgi import application
from tests.conftest import World
from tests.integration.test_console_abuse import raw_viewer
from tests.integration.test_console_access import running_vm
from tests.support.processes import free_port
from vms.console.hub import VIEWER_QUEUE_BYTES, ConsoleHub
from vms.console.protocol import CloseCode
from vms.hypervisor.host import Host

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

FLOOD = 50 * 1024 * 1024
CHUNK = 16 * 1024


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, uvicorn.Server]]:
    port = free_port()
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}", server
    server.should_exit = True
    await asyncio.wait_for(task, 15)


async def test_a_viewer_that_never_reads_holds_a_bounded_amount_of_output(
    world: World,
    server: tuple[str, uvicorn.Server],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    tmp_path: Path,
) -> None:
    url, uvicorn_server = server
    settings.CONSOLE_RECORDING_DIR = tmp_path
    vm = await asyncio.to_thread(running_vm, world)
    console = ConsoleHub(vm_id=str(vm.pk), domain_uuid=str(vm.domain_uuid), host=Host("test:///"))

    class Registry:
        async def get(self, **kwargs: Any) -> ConsoleHub:
            return console

    monkeypatch.setattr("vms.consumers.hubs", lambda: Registry())
    frozen = await raw_viewer(url, vm, world.alice)
    (viewer,) = console.viewers
    transports = [c.transport for c in uvicorn_server.server_state.connections]
    most_buffered = 0
    most_queued = 0
    chunk = b"x" * (CHUNK - 1) + b"\n"
    started = time.monotonic()
    for sent in range(0, FLOOD, CHUNK):
        console.feed(chunk)
        if sent % (16 * CHUNK) == 0:
            await asyncio.sleep(0)  # the viewer's sender and uvicorn run
            most_buffered = max(most_buffered, *(t.get_write_buffer_size() for t in transports))
            most_queued = max(most_queued, viewer.queued_bytes)
    flood_seconds = time.monotonic() - started
    console.feed(b"end-of-flood\r\n")
    await asyncio.to_thread(frozen.read_until, b"end-of-flood", 30)
    skipped = sum(c.get("bytes", 0) for c in frozen.controls if c.get("type") == "skipped")
    print(
        f"\n{FLOOD // 2**20} MiB flooded in {flood_seconds:.1f}s to a viewer that did not read: "
        f"uvicorn's write buffer peaked at {most_buffered / 1024:.0f} KiB, the viewer queue at "
        f"{most_queued / 1024:.0f} KiB; on reading again it got {frozen.binary / 2**20:.1f} MiB "
        f"(the rest sat in kernel socket buffers) and {skipped / 2**20:.1f} MiB marked skipped"
    )
    assert most_queued <= VIEWER_QUEUE_BYTES
    assert most_buffered <= 256 * 1024  # uvicorn's high-water mark plus one frame
    # What reached the client is what the kernel's socket buffers hold, at most.
    assert frozen.binary < 8 * 1024 * 1024
    assert skipped + frozen.binary >= FLOOD
    frozen.close()
    console.close(CloseCode.CONSOLE_LOST)
