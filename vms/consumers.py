"""``/ws/vms/<id>/console/``: a VM's shell console in the browser.

Admission, in order: a signed-in user (session cookie), an allowed Origin
(checked by the ASGI stack before we run), a one-time console token, and a
role on the VM (owner: read-write; instructor of the owner's cohort:
read-only). A refused connection is accepted and at once closed with a
distinct code (vms.console.protocol.CloseCode) so that the page can say why;
nothing about the VM is sent before admission.

The token travels as a websocket subprotocol (``token.<value>``), so it never
appears in a URL or an access log; ``?token=`` works too for simple clients.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from vms import lifecycle
from vms.console.access import ConsoleGrant, console_token_redeem
from vms.console.hub import ConsoleHub, Viewer, hubs
from vms.console.protocol import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, CloseCode, ConsoleRefused
from vms.console.recording import CastWriter, recording_budget, recording_path
from vms.events import vm_group
from vms.guest_logs import shell_scrollback
from vms.hypervisor.errors import HypervisorError
from vms.models import ConsoleMode, ConsoleSession, LabVM, VMState

log = logging.getLogger(__name__)

ACTIVITY_EVERY_SECONDS = 60
MAX_INPUT_FRAME = 64 * 1024


@database_sync_to_async
def _redeem(user: Any, vm_id: str, token: str | None) -> ConsoleGrant:
    return console_token_redeem(user=user, vm_id=vm_id, token=token)


@database_sync_to_async
def _session_start(
    grant: ConsoleGrant, user: Any, live_recording_bytes: int
) -> tuple[ConsoleSession, CastWriter | None]:
    """The session's row, and its recorder when it is recorded (the owner's)."""
    session = ConsoleSession.objects.create(vm=grant.vm, user=user, mode=grant.mode)
    if grant.mode != ConsoleMode.READ_WRITE or not settings.CONSOLE_RECORDING_MAX_BYTES:
        return session, None
    vm = grant.vm
    budget, limit = recording_budget(vm=vm, user=user, live_bytes=live_recording_bytes)
    path = recording_path(settings.CONSOLE_RECORDING_DIR, vm.pk, session.pk)
    ConsoleSession.objects.filter(pk=session.pk).update(recording=str(path))
    session.recording = str(path)
    recorder = CastWriter(
        path,
        cols=80,
        rows=24,
        max_bytes=budget,
        limit=limit,
        title=f"{vm.exercise.slug} — {vm.owner.username}",
    )
    return session, recorder


@database_sync_to_async
def _session_end(session: ConsoleSession, recorder: CastWriter | None) -> None:
    fields: dict[str, Any] = {"ended_at": timezone.now()}
    if recorder is not None:
        fields.update(recorded_bytes=recorder.written, recording_truncated=recorder.truncated)
    ConsoleSession.objects.filter(pk=session.pk).update(**fields)


@database_sync_to_async
def _touch(vm_id: str) -> None:
    LabVM.objects.filter(pk=vm_id).update(last_activity_at=timezone.now())


class ConsoleConsumer(AsyncWebsocketConsumer):
    grant: ConsoleGrant | None = None
    hub: ConsoleHub | None = None
    viewer: Viewer | None = None
    session: ConsoleSession | None = None
    seat: ConsoleHub | None = None  # the hub whose seat this socket holds
    _last_touch = 0.0

    def _token(self) -> str | None:
        for proto in self.scope.get("subprotocols") or []:
            if proto.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                return str(proto[len(TOKEN_SUBPROTOCOL_PREFIX) :])
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        return query.get("token", [None])[0]

    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        vm_id = str(self.scope["url_route"]["kwargs"]["vm_id"])
        try:
            self.grant = await _redeem(self.scope.get("user"), vm_id, self._token())
        except ConsoleRefused as refused:
            await self.refuse(refused.code)
            return
        vm = self.grant.vm
        assert vm.domain_uuid is not None
        try:
            self.hub = await hubs().get(
                vm_id=str(vm.pk),
                domain_uuid=str(vm.domain_uuid),
                host=lifecycle.hypervisor(vm.host.uri),
                scrollback=partial(shell_scrollback, vm=vm),
            )
        except HypervisorError as exc:
            log.warning("console of %s could not be opened: %s", vm.pk, exc)
            await self.refuse(CloseCode.CONSOLE_LOST)
            return
        read_only = self.grant.mode == ConsoleMode.READ_ONLY
        if not self.hub.take_seat(read_only=read_only):
            await self.refuse(CloseCode.TOO_MANY_CONSOLES)
            return
        self.seat = self.hub
        self.session, recorder = await _session_start(
            self.grant, self.scope["user"], self.hub.recording_bytes()
        )
        self.viewer = Viewer(
            read_only=read_only,
            send_bytes=self._send_bytes,
            send_json=self._send_json,
            close=self.refuse,
        )
        await self._send_json(
            {
                "type": "hello",
                "mode": self.grant.mode,
                "vm": str(vm.pk),
                "hostname": vm.hostname,
                "session": str(self.session.pk),
            }
        )
        self.hub.join(self.viewer, recorder)
        self.viewer.start()
        await self.channel_layer.group_add(vm_group(vm.pk), self.channel_name)

    async def _send_bytes(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message))

    async def refuse(self, code: CloseCode) -> None:
        await self.close(code=int(code))

    async def disconnect(self, code: int) -> None:
        if self.grant is not None:
            await self.channel_layer.group_discard(vm_group(self.grant.vm.pk), self.channel_name)
        recorder = None
        try:
            if self.seat is not None and self.grant is not None:
                self.seat.release_seat(read_only=self.grant.mode == ConsoleMode.READ_ONLY)
                self.seat = None
            if self.hub is not None and self.viewer is not None:
                recorder = self.hub.leave(self.viewer)
                await self.viewer.stop()
        finally:
            if recorder is not None:
                recorder.close()
            if self.session is not None:
                await _session_end(self.session, recorder)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.hub is None or self.viewer is None or self.grant is None:
            return
        if bytes_data is not None:
            # Read-only is enforced here, whatever the page does.
            if self.viewer.read_only or len(bytes_data) > MAX_INPUT_FRAME:
                return
            if not self.hub.input(bytes_data):
                self.viewer.note_input_dropped(len(bytes_data))
            now = time.monotonic()
            if now - self._last_touch > ACTIVITY_EVERY_SECONDS:
                self._last_touch = now
                await _touch(str(self.grant.vm.pk))
            return
        try:
            message = json.loads(text_data or "")
            kind = message["type"]
        except (ValueError, TypeError, KeyError):
            return  # a malformed control message is ignored, not fatal
        if kind == "ack":
            self.viewer.ack(_int(message.get("bytes"), 0, 1 << 30))
        elif kind == "flow":
            self.viewer.set_window(_int(message.get("window"), 0, 1 << 30))
        elif kind == "resize" and not self.viewer.read_only:
            cols = _int(message.get("cols"), 2, 1000)
            rows = _int(message.get("rows"), 2, 1000)
            if cols and rows:
                self.hub.resize(cols, rows)

    async def user_event(self, message: dict[str, Any]) -> None:
        """A state change of the VM (the vm-<id> group)."""
        event = message["event"]
        await self._send_json({"type": "vm", **event})
        if event.get("state") not in (VMState.RUNNING, None):
            await self.refuse(CloseCode.VM_NOT_RUNNING)


def _int(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if low <= value <= high else 0
