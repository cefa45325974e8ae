"""Who gets into a console, through the real ASGI app (Origin check, session
auth, token, role) and the real Redis channel layer. The libvirt side is
replaced by a recording hub here; test_console.py drives a real guest."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.asgi import application
from tests.conftest import World
from vms import services
from vms.console import access
from vms.console.hub import ConsoleHub
from vms.console.protocol import SUBPROTOCOL, CloseCode
from vms.hypervisor.host import Host
from vms.models import ConsoleSession, ConsoleToken, LabVM, VMState

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://localhost:8000")


class RecordingHub:
    """Stands in for the libvirt side: remembers what viewers send."""

    def __init__(self) -> None:
        self.closed = False
        self.inputs: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []
        self.viewers: list[Any] = []

    def join(self, viewer: Any, recorder: Any = None) -> None:
        self.viewers.append(viewer)
        viewer.offer(b"scrollback$ ")

    def leave(self, viewer: Any) -> None:
        self.viewers.remove(viewer)

    def input(self, data: bytes) -> bool:
        self.inputs.append(data)
        return True

    def take_seat(self, *, read_only: bool) -> bool:
        return True

    def release_seat(self, *, read_only: bool) -> None:
        pass

    def recording_bytes(self) -> int:
        return 0

    def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> RecordingHub:
    fake = RecordingHub()

    class Registry:
        async def get(self, **kwargs: Any) -> RecordingHub:
            return fake

    monkeypatch.setattr("vms.consumers.hubs", lambda: Registry())
    return fake


def running_vm(world: World) -> LabVM:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("celery.app.task.Task.apply_async", lambda *a, **k: None)
        vm = services.lab_start(user=world.alice, assignment=world.hello)
    LabVM.objects.filter(pk=vm.pk).update(state=VMState.RUNNING, domain_uuid=uuid.uuid4())
    vm.refresh_from_db()
    return vm


async def cookie_for(user: User) -> bytes:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_console(
    vm_id: object, *, user: User | None, token: str | None, origin: tuple[bytes, bytes] = ORIGIN
) -> tuple[WebsocketCommunicator, bool]:
    headers = [origin]
    if user is not None:
        headers.append((b"cookie", await cookie_for(user)))
    protocols = [SUBPROTOCOL] + ([f"token.{token}"] if token else [])
    headers.append((b"sec-websocket-protocol", ", ".join(protocols).encode()))
    ws = WebsocketCommunicator(
        application, f"/ws/vms/{vm_id}/console/", headers=headers, subprotocols=protocols
    )
    connected, _ = await ws.connect()
    return ws, connected


async def close_code(ws: WebsocketCommunicator) -> int:
    while True:
        message = await ws.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            return int(message["code"])
        assert "bytes" not in message or not message["bytes"], "console bytes leaked"
        assert "hello" not in (message.get("text") or ""), "admitted"


issue = sync_to_async(lambda user, vm: access.console_token_issue(user=user, vm=vm))


async def test_no_session_is_refused(world: World, hub: RecordingHub) -> None:
    vm = await sync_to_async(running_vm)(world)
    token = await issue(world.alice, vm)
    ws, connected = await open_console(vm.pk, user=None, token=token)
    assert connected  # accepted only to say why it closes
    assert await close_code(ws) == CloseCode.NOT_LOGGED_IN
    assert hub.viewers == []


async def test_wrong_origin_never_reaches_the_consumer(world: World, hub: RecordingHub) -> None:
    vm = await sync_to_async(running_vm)(world)
    token = await issue(world.alice, vm)
    _ws, connected = await open_console(
        vm.pk, user=world.alice, token=token, origin=(b"origin", b"https://evil.example.com")
    )
    assert not connected
    # The token was not spent by the refused handshake.
    assert await ConsoleToken.objects.filter(used_at__isnull=True).acount() == 1


@pytest.mark.parametrize("problem", ["missing", "expired", "reused", "other_vm", "other_user"])
async def test_bad_tokens_are_refused(world: World, hub: RecordingHub, problem: str) -> None:
    vm = await sync_to_async(running_vm)(world)
    token: str | None = await issue(world.alice, vm)
    target = vm.pk
    if problem == "missing":
        token = None
    elif problem == "expired":
        await ConsoleToken.objects.aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    elif problem == "reused":
        first, ok = await open_console(vm.pk, user=world.alice, token=token)
        assert ok
        assert json.loads(await first.receive_from(timeout=5))["type"] == "hello"
        await first.disconnect()
    elif problem == "other_vm":
        target = uuid.uuid4()
    elif problem == "other_user":
        # tess may watch alice's console, but not with alice's token.
        ws, _ = await open_console(vm.pk, user=world.tess, token=token)
        assert await close_code(ws) == CloseCode.TOKEN_INVALID
        return
    ws, _ = await open_console(target, user=world.alice, token=token)
    assert await close_code(ws) == CloseCode.TOKEN_INVALID


async def test_strangers_cannot_get_a_token(world: World) -> None:
    vm = await sync_to_async(running_vm)(world)
    for user in (world.bob, world.charlie):  # a student and an instructor elsewhere
        client = Client()
        await sync_to_async(client.force_login)(user)
        response = await sync_to_async(client.post)(f"/vms/{vm.pk}/console-token")
        assert response.status_code == 404
        watch = await sync_to_async(client.get)(f"/vms/{vm.pk}/watch")
        assert watch.status_code == 404
    assert await ConsoleToken.objects.acount() == 0


async def test_role_lost_after_issue_is_refused(world: World, hub: RecordingHub) -> None:
    vm = await sync_to_async(running_vm)(world)
    token = await issue(world.tess, vm)
    await world.autumn.enrolments.filter(user=world.tess).adelete()
    ws, _ = await open_console(vm.pk, user=world.tess, token=token)
    assert await close_code(ws) == CloseCode.FORBIDDEN


async def test_stopped_vm_is_refused(world: World, hub: RecordingHub) -> None:
    vm = await sync_to_async(running_vm)(world)
    token = await issue(world.alice, vm)
    await LabVM.objects.filter(pk=vm.pk).aupdate(state=VMState.STOPPED)
    ws, _ = await open_console(vm.pk, user=world.alice, token=token)
    assert await close_code(ws) == CloseCode.VM_NOT_RUNNING


async def test_owner_types_and_instructor_only_watches(world: World, hub: RecordingHub) -> None:
    vm = await sync_to_async(running_vm)(world)
    owner, ok = await open_console(vm.pk, user=world.alice, token=await issue(world.alice, vm))
    assert ok
    watcher, ok = await open_console(vm.pk, user=world.tess, token=await issue(world.tess, vm))
    assert ok
    assert json.loads(await owner.receive_from(timeout=5))["mode"] == "rw"
    assert json.loads(await watcher.receive_from(timeout=5))["mode"] == "ro"
    assert await watcher.receive_output(timeout=5) == {
        "type": "websocket.send",
        "bytes": b"scrollback$ ",
    }

    await owner.send_to(bytes_data=b"ls\r")
    await owner.send_to(text_data=json.dumps({"type": "resize", "cols": 120, "rows": 40}))
    # The page disables typing for watchers; the server drops it regardless.
    await watcher.send_to(bytes_data=b"rm -rf /\r")
    await watcher.send_to(text_data=json.dumps({"type": "resize", "cols": 20, "rows": 5}))
    await watcher.send_to(text_data="not json")
    await asyncio.sleep(0.3)  # let both consumers handle what was sent
    assert hub.inputs == [b"ls\r"]
    assert hub.sizes == [(120, 40)]

    await owner.disconnect()
    await watcher.disconnect()
    sessions = [s async for s in ConsoleSession.objects.order_by("mode")]
    assert [(s.user_id, s.mode) for s in sessions] == [
        (world.tess.pk, "ro"),
        (world.alice.pk, "rw"),
    ]
    assert all(s.ended_at for s in sessions)
    assert sessions[1].recording  # the owner's session is recorded
    assert not sessions[0].recording


async def test_consoles_per_vm_are_capped_and_a_closed_one_frees_its_seat(
    world: World, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Any
) -> None:
    settings.CONSOLE_RW_SESSIONS_PER_VM = 2
    settings.CONSOLE_RECORDING_DIR = tmp_path
    vm = await sync_to_async(running_vm)(world)
    # A real hub (never opened: no libvirt here), so its seats are what count.
    real = ConsoleHub(vm_id=str(vm.pk), domain_uuid=str(vm.domain_uuid), host=Host("test:///"))

    class Registry:
        async def get(self, **kwargs: Any) -> ConsoleHub:
            return real

    monkeypatch.setattr("vms.consumers.hubs", lambda: Registry())
    first, ok = await open_console(vm.pk, user=world.alice, token=await issue(world.alice, vm))
    assert ok
    second, ok = await open_console(vm.pk, user=world.alice, token=await issue(world.alice, vm))
    assert ok
    third, _ = await open_console(vm.pk, user=world.alice, token=await issue(world.alice, vm))
    assert await close_code(third) == CloseCode.TOO_MANY_CONSOLES
    watcher, ok = await open_console(vm.pk, user=world.tess, token=await issue(world.tess, vm))
    assert ok  # read-only watchers have seats of their own
    assert json.loads(await watcher.receive_from(timeout=5))["mode"] == "ro"

    await first.disconnect()
    again, ok = await open_console(vm.pk, user=world.alice, token=await issue(world.alice, vm))
    assert ok
    assert json.loads(await again.receive_from(timeout=5))["type"] == "hello"
    for ws in (second, watcher, again):
        await ws.disconnect()
    real.close(CloseCode.CONSOLE_LOST)
