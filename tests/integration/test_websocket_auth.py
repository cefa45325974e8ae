"""The websocket stack (Origin check, session auth) through the real ASGI app
and the real Redis channel layer."""

from __future__ import annotations

import asyncio
import random

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from labplatform.accounts.models import User
from labplatform.asgi import application
from labplatform.consumers import CLOSE_UNAUTHENTICATED, user_group
from tests.conftest import World

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

GOOD_ORIGIN = (b"origin", b"http://localhost:8000")


async def session_cookie_for(user: User) -> bytes:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_unauthenticated_client_is_refused(world: World) -> None:
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=[GOOD_ORIGIN])
    connected, code = await communicator.connect()
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_bad_origin_is_refused_even_with_a_session(world: World) -> None:
    cookie = await session_cookie_for(world.alice)
    communicator = WebsocketCommunicator(
        application,
        "/ws/events/",
        headers=[(b"origin", b"https://evil.example.com"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert not connected


async def test_signed_in_user_receives_only_their_events(world: World) -> None:
    alice_ws = WebsocketCommunicator(
        application,
        "/ws/events/",
        headers=[GOOD_ORIGIN, (b"cookie", await session_cookie_for(world.alice))],
    )
    bob_ws = WebsocketCommunicator(
        application,
        "/ws/events/",
        headers=[GOOD_ORIGIN, (b"cookie", await session_cookie_for(world.bob))],
    )
    assert (await alice_ws.connect())[0]
    assert (await bob_ws.connect())[0]

    layer = get_channel_layer()
    assert layer is not None
    event = {"kind": "test", "text": "for alice"}
    await layer.group_send(user_group(world.alice.pk), {"type": "user.event", "event": event})

    assert await alice_ws.receive_json_from(timeout=5) == event
    assert await bob_ws.receive_nothing(timeout=0.5)
    await alice_ws.disconnect()
    await bob_ws.disconnect()


async def test_consumers_cancelled_at_any_moment_end(world: World) -> None:
    """A consumer receives from the channel layer from its first moment, a
    refused one too, and a server cancels it when its client goes. Cancelled
    as one of redis-py's commands completes, Python 3.11 lost the cancellation
    and the consumer received for ever (labplatform.channel_layer); a test's
    event loop then waited for it at teardown. Cancel at many moments: every
    consumer must end."""
    rounds = 400
    for round_ in range(rounds):
        communicators = [
            WebsocketCommunicator(application, "/ws/events/", headers=[GOOD_ORIGIN])
            for _ in range(3)
        ]
        for communicator in communicators:
            assert not (await communicator.connect())[0]  # no session: refused
        await asyncio.sleep(random.choice([0, 0, 0.001, 0.003, 0.01, 0.03]))
        apps = {communicator.future for communicator in communicators}
        for app in apps:
            app.cancel()
        _, running = await asyncio.wait(apps, timeout=10)
        assert not running, f"round {round_ + 1}: {len(running)} of 3 cancelled consumers still run"
