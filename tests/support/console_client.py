"""A console websocket client for tests and benchmarks: what the page's
console.js does, in Python (token, subprotocol, flow-control acks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlparse

from asgiref.sync import sync_to_async
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labplatform.accounts.models import User
from vms.console.access import console_token_issue
from vms.console.protocol import SUBPROTOCOL
from vms.models import LabVM

ACK_EVERY = 64 * 1024


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class ConsoleClient:
    def __init__(self, ws: ClientConnection, hello: dict[str, Any], *, flow: bool) -> None:
        self.ws = ws
        self.hello = hello
        self.flow = flow
        self.output = bytearray()
        self.received = 0  # bytes, including what was trimmed from output
        self.kernel = ""
        self.controls: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.reading = asyncio.Event()
        self.reading.set()
        self._changed = asyncio.Event()
        self._unacked = 0
        self._task = asyncio.get_running_loop().create_task(self._reader())

    @classmethod
    async def open(
        cls, base_url: str, vm: LabVM, user: User, *, flow: bool = True
    ) -> ConsoleClient:
        token = await sync_to_async(console_token_issue)(user=user, vm=vm)
        cookie = await sync_to_async(_session_cookie)(user)
        host = urlparse(base_url).netloc
        ws = await connect(
            f"ws://{host}/ws/vms/{vm.pk}/console/",
            subprotocols=[SUBPROTOCOL, f"token.{token}"],  # type: ignore[list-item]
            additional_headers={"Cookie": cookie, "Origin": base_url},
            max_size=None,
        )
        first = await asyncio.wait_for(ws.recv(), 10)
        hello = json.loads(first)
        if hello.get("type") != "hello":
            raise AssertionError(f"expected hello, got {hello!r} (close {ws.close_code})")
        client = cls(ws, hello, flow=flow)
        if flow:
            await ws.send(json.dumps({"type": "flow", "window": 1024 * 1024}))
        return client

    async def _reader(self) -> None:
        try:
            while True:
                await self.reading.wait()
                message = await self.ws.recv()
                if isinstance(message, bytes):
                    self.output += message
                    self.received += len(message)
                    if len(self.output) > 4 * 1024 * 1024:
                        del self.output[: len(self.output) - 1024 * 1024]
                    self._unacked += len(message)
                    if self.flow and self._unacked >= ACK_EVERY:
                        await self.ws.send(json.dumps({"type": "ack", "bytes": self._unacked}))
                        self._unacked = 0
                else:
                    control = json.loads(message)
                    self.controls.append(control)
                    if control.get("type") == "kernel":
                        self.kernel += control["data"]
                self._changed.set()
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else 1006
            self._changed.set()

    async def type(self, text: str | bytes) -> None:
        await self.ws.send(text.encode() if isinstance(text, str) else text)

    async def wait_for(self, needle: bytes, *, after: int = 0, timeout: float = 30) -> float:
        """Wait until ``needle`` is in the output past offset ``after``;
        returns the seconds waited."""
        start = time.monotonic()
        deadline = start + timeout
        scan = after  # only new output is searched: linear in what arrives
        while self.output.find(needle, scan) < 0:
            scan = max(after, len(self.output) - len(needle) + 1)
            if self.close_code is not None:
                raise AssertionError(f"closed ({self.close_code}) before {needle!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = bytes(self.output[-300:])
                raise AssertionError(f"{needle!r} not seen in {timeout}s; tail: {tail!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return time.monotonic() - start

    async def wait_closed(self, timeout: float = 15) -> int:
        await asyncio.wait_for(self._task, timeout)
        assert self.close_code is not None
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await self._task
