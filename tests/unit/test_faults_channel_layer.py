"""The channel layer outlives Redis going away (labplatform.channel_layer):
a consumer's receive waits for Redis instead of ending the consumer (and
with it the websocket of an open console), and leaving a group while Redis
is away does not fail a disconnect. Against a real redis-server started late
on its own port; the console end to end is tests/integration/test_faults.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from unittest import mock

import pytest
from channels_redis.core import RedisChannelLayer as PlainRedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from labplatform.channel_layer import RedisChannelLayer
from tests.support.processes import Process, free_port, port_open

pytestmark = pytest.mark.redis


def redis_server(port: int, folder: Path) -> Process:
    server = Process(
        "redis",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
        dict(os.environ),
        folder / "redis.log",
    )
    server.wait_until(lambda: port_open(port), 30, "listening")
    return server


async def test_a_receive_waits_for_redis_to_come_back(tmp_path: Path) -> None:
    port = free_port()
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    channel = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(1)  # several attempts meet a closed port
    assert not receiving.done()
    server = await asyncio.to_thread(redis_server, port, tmp_path)
    try:
        await layer.send(channel, {"type": "vm.event"})
        assert await asyncio.wait_for(receiving, 15) == {"type": "vm.event"}
    finally:
        receiving.cancel()
        await layer.flush()
        await asyncio.to_thread(server.stop)


async def test_leaving_a_group_while_redis_is_away_does_not_raise() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisConnectionError):  # what channels_redis alone does
        await PlainRedisChannelLayer(hosts=[url]).group_discard("vm-1", "specific.x!y")
    await RedisChannelLayer(hosts=[url]).group_discard("vm-1", "specific.x!y")


async def test_a_cancelled_receive_ends_even_when_cancelling_meets_a_redis_error() -> None:
    """channels_redis cleans up a cancelled receive by reading its helper
    tasks' results, and one that failed on a broken connection re-raises that
    error in place of the cancellation. A retry on it swallowed the
    cancellation: the consumer's task never ended, and a test's event loop
    waited for it for ever at teardown (seen once in a full CI run)."""

    async def receive(self: object, channel: str) -> dict[str, object]:
        try:
            await asyncio.Event().wait()  # nothing arrives
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None
        raise AssertionError("unreachable")

    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    with mock.patch.object(PlainRedisChannelLayer, "receive", receive):
        receiving = asyncio.create_task(layer.receive("specific.x!y"))
        await asyncio.sleep(0.1)
        receiving.cancel()
        await asyncio.wait({receiving}, timeout=2)  # (wait_for would wait with it)
        ended = receiving.done()
        if not ended:  # let the test end: a retrying receive waits on
            receiving.get_loop().call_soon(receiving.cancel)
        assert ended, "the cancelled receive went on retrying"
        assert receiving.cancelled()


async def test_a_cancelled_receive_ends_even_when_the_cancellation_is_lost() -> None:
    """Python 3.11's asyncio.wait_for drops a cancellation that arrives as the
    awaited operation completes, and redis-py sends every command through it:
    channels_redis's receive then went on with its next BZPOPMIN, for ever.
    Here the first cancellation is lost the same way."""
    lost = 0

    async def receive(self: object, channel: str) -> dict[str, object]:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(0.01)  # one BZPOPMIN after another
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # what wait_for does with it on 3.11

    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    with mock.patch.object(PlainRedisChannelLayer, "receive", receive):
        receiving = asyncio.create_task(layer.receive("specific.x!y"))
        await asyncio.sleep(0.05)
        receiving.cancel()
        await asyncio.wait({receiving}, timeout=2)
        ended = receiving.done()
        if not ended:  # let the test end
            receiving.get_loop().call_soon(receiving.cancel)
        assert lost == 1
        assert ended, "the cancelled receive went on receiving"
        assert receiving.cancelled()
