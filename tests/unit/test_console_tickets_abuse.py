"""1,000 bad console tickets, none admitted: forged, replayed, expired and
cross-user, through the real ASGI app (Origin check, session auth, the
consumer's redemption) and the real Redis channel layer. The libvirt side is
the recording hub of tests/integration/test_console_access.py, so that an
admission would show as a "hello" and a hub viewer; no guest is needed.

Each kind prints its counts (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import LazySettings
from django.test import Client
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.asgi import application
from labplatform.courses.models import Assignment
from tests.conftest import World
from tests.integration.test_console_access import ORIGIN, hub  # noqa: F401 - the fixture
from vms import services
from vms.console import access
from vms.console.protocol import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, CloseCode
from vms.models import ConsoleSession, ConsoleToken, LabVM, VMState

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

PER_KIND = 250
CONCURRENCY = 25

issue = sync_to_async(lambda user, vm: access.console_token_issue(user=user, vm=vm))


def running_vm(user: User, assignment: Assignment) -> LabVM:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("celery.app.task.Task.apply_async", lambda *a, **k: None)
        vm = services.lab_start(user=user, assignment=assignment)
    LabVM.objects.filter(pk=vm.pk).update(state=VMState.RUNNING, domain_uuid=uuid.uuid4())
    vm.refresh_from_db()
    return vm


async def cookie_for(user: User) -> bytes:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def knock(vm_id: object, *, cookie: bytes | None, token: str, in_query: bool = False) -> int:
    """Present a ticket; 0 if the console admitted it, else the close code."""
    headers = [ORIGIN] + ([(b"cookie", cookie)] if cookie else [])
    protocols = [SUBPROTOCOL]
    path = f"/ws/vms/{vm_id}/console/"
    if in_query:
        path += f"?token={quote(token, safe='')}"
    else:
        protocols.append(TOKEN_SUBPROTOCOL_PREFIX + token)
    ws = WebsocketCommunicator(application, path, headers=headers, subprotocols=protocols)
    connected, _ = await ws.connect(timeout=10)
    if not connected:
        return -1
    message = await ws.receive_output(timeout=10)
    if message["type"] == "websocket.close":
        return int(message["code"])
    await ws.disconnect()
    assert '"hello"' in message.get("text", ""), message
    return 0


async def knock_all(calls: list[Any]) -> list[int]:
    codes: list[int] = []
    for start in range(0, len(calls), CONCURRENCY):
        codes += await asyncio.gather(*calls[start : start + CONCURRENCY])
    return codes


def forged_tickets(real: str) -> list[str]:
    """Random and near-miss strings, none of them a live ticket."""
    rng = random.Random(15)
    urlsafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    fixed = [
        "",
        " ",
        "\x00",
        real + "\x00",
        "\x00" + real,
        real[:-1],
        real + "A",
        real.upper(),
        real.swapcase(),
        " " + real,
        real + " ",
        real[::-1],
        access._hash(real),  # the stored hash is not the ticket
        "A" * (1 << 20),  # 1 MiB
        "x" * 65536,
        "' OR '1'='1",
        "%00",
        "../" * 50,
        "null",
        "None",
        "undefined",
        "true",
        "0",
        "é" * 43,
        "🔑" * 43,
        "\u202e" + real,
        real[:20] + "\u0301" + real[20:],
        "\ud7ff\ue000\uffff",
    ]
    forged = list(fixed)
    for i in range(len(real)):  # one character changed, at every position
        char = urlsafe[(urlsafe.index(real[i]) + 1) % len(urlsafe)]
        forged.append(real[:i] + char + real[i + 1 :])
    alphabets = [urlsafe, "0123456789abcdef", "".join(map(chr, range(1, 128))), "éß€漢字🙂\u200b"]
    while len(forged) < PER_KIND:
        alphabet = rng.choice(alphabets)
        length = rng.choice([1, 8, 42, 43, 44, 64, 255, 4096])
        forged.append("".join(rng.choice(alphabet) for _ in range(length)))
    return forged[:PER_KIND]


@pytest.mark.usefixtures("hub")
async def test_a_thousand_bad_tickets_are_refused_and_a_good_one_works_once(
    world: World, settings: LazySettings
) -> None:
    vm_a = await sync_to_async(running_vm)(world.alice, world.hello)
    vm_b = await sync_to_async(running_vm)(world.bob, world.strace)
    alice, bob = await cookie_for(world.alice), await cookie_for(world.bob)
    tess, charlie = await cookie_for(world.tess), await cookie_for(world.charlie)
    codes: dict[str, list[int]] = {}

    # Forged: a live ticket of alice's exists, and is never matched by a near miss.
    live = await issue(world.alice, vm_a)
    forged = forged_tickets(live)
    codes["forged"] = await knock_all(
        [
            knock(vm_a.pk, cookie=alice, token=t, in_query=i % 2 == 1 and len(t) < 8192)
            for i, t in enumerate(forged)
        ]
    )

    # Replayed: one ticket used once, then again and again, one at a time and
    # in bursts; and a fresh ticket raced by many sockets at once.
    first = await issue(world.alice, vm_a)
    assert await knock(vm_a.pk, cookie=alice, token=first) == 0
    raced = await issue(world.alice, vm_a)
    race = await asyncio.gather(
        *[knock(vm_a.pk, cookie=alice, token=raced) for _ in range(CONCURRENCY + 1)]
    )
    assert race.count(0) == 1, f"a raced ticket admitted {race.count(0)} sockets"
    race.remove(0)
    sequential = [await knock(vm_a.pk, cookie=alice, token=first) for _ in range(50)]
    bursts = await knock_all(
        [knock(vm_a.pk, cookie=alice, token=first) for _ in range(PER_KIND - 50 - len(race))]
    )
    codes["replayed"] = race + sequential + bursts

    # Expired: issued, then the clock moved to and past CONSOLE_TOKEN_SECONDS.
    expired = [await issue(world.alice, vm_a) for _ in range(PER_KIND)]
    lifetime = settings.CONSOLE_TOKEN_SECONDS
    shifts = [lifetime, lifetime + 1, lifetime * 2, 86400, 365 * 86400]

    class Clock:
        shift = 0

        @staticmethod
        def now() -> datetime:
            return timezone.now() + timedelta(seconds=Clock.shift)

    codes["expired"] = []
    with pytest.MonkeyPatch.context() as clock:
        clock.setattr(access, "timezone", Clock)
        for i, token in enumerate(expired):
            Clock.shift = shifts[i % len(shifts)]
            codes["expired"].append(await knock(vm_a.pk, cookie=alice, token=token))

    # Cross-user and cross-VM: valid, unspent tickets in the wrong hands or on
    # the wrong VM's URL.
    alices = [await issue(world.alice, vm_a) for _ in range(5)]
    bobs = await issue(world.bob, vm_b)
    tesss = await issue(world.tess, vm_a)  # tess may watch A, with her own ticket only
    wrong: list[tuple[object, bytes | None, str]] = []
    for token in alices:
        wrong += [
            (vm_a.pk, bob, token),
            (vm_a.pk, tess, token),
            (vm_a.pk, charlie, token),
            (vm_a.pk, None, token),
            (vm_b.pk, alice, token),
            (vm_b.pk, bob, token),
            (uuid.uuid4(), alice, token),
            (str(vm_a.pk).upper().replace("-", ""), bob, token),
        ]
    wrong += [(vm_a.pk, bob, bobs), (vm_a.pk, alice, bobs), (vm_b.pk, alice, bobs)]
    wrong += [(vm_a.pk, alice, tesss), (vm_b.pk, tess, tesss), (vm_a.pk, charlie, tesss)]
    wrong = (wrong * (PER_KIND // len(wrong) + 1))[:PER_KIND]
    codes["cross-user"] = await knock_all(
        [knock(vm, cookie=cookie, token=token) for vm, cookie, token in wrong]
    )

    for kind, kind_codes in codes.items():
        print(f"{kind}: {len(kind_codes)} tried, {kind_codes.count(0)} admitted,", end=" ")
        print(dict(Counter(CloseCode(c).name for c in kind_codes if c > 0)))
    assert {kind: len(c) for kind, c in codes.items()} == dict.fromkeys(codes, PER_KIND)
    assert {kind: c.count(0) for kind, c in codes.items()} == dict.fromkeys(codes, 0)
    every = list(itertools.chain.from_iterable(codes.values()))
    assert all(c > 0 for c in every), "a handshake was refused before admission"
    # Only the two legitimate uses opened a session.
    assert await ConsoleSession.objects.acount() == 2

    # The bad attempts spent nothing: each unspent ticket still works, once.
    for vm, cookie, token in [(vm_a.pk, alice, live), (vm_a.pk, alice, alices[0])]:
        assert await knock(vm, cookie=cookie, token=token) == 0
        assert await knock(vm, cookie=cookie, token=token) == CloseCode.TOKEN_INVALID
    assert await knock(vm_b.pk, cookie=bob, token=bobs) == 0
    assert await knock(vm_a.pk, cookie=tess, token=tesss) == 0
    assert await ConsoleToken.objects.filter(used_at__isnull=False).acount() == 6
