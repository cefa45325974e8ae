"""The Channels layer: channels_redis's, made to outlive a Redis restart.

Every consumer receives from the layer beside its websocket; channels_redis
lets a lost Redis connection escape that receive, which ends the consumer and
drops the socket without a close frame: a Redis restart cut every open
console, although console bytes never travel through Redis. Here the receive
waits for Redis to come back instead (what the layer carries, VM state events,
is advisory: one missed while Redis was away is not worth a socket). And
leaving a group while Redis is away must not fail the consumer's disconnect,
which still has its console seat, viewer and recording to release: the
membership expires on its own (group_expiry).

And a cancelled receive must end. On Python 3.11 (Debian 12's), asyncio's
wait_for returns the result of an operation that completes as the
cancellation arrives and drops the cancellation (fixed in 3.12); redis-py
sends every command through wait_for when a socket timeout is set. A consumer
cancelled at that moment went on receiving for ever: its BZPOPMIN loop never
ends on its own, a server leaked the task, and a test's event loop waited for
it at teardown (CI hung so). The receive therefore runs as a task of its own,
cancelled again until it has ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

REDIS_AWAY = (RedisConnectionError, RedisTimeoutError, OSError)
RETRY_FIRST_SECONDS = 0.25
RETRY_MAX_SECONDS = 5.0
RECANCEL_SECONDS = 0.05


async def end_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` until it has ended: one cancellation can be lost (the
    module's docstring). Cancellations of the caller meanwhile are held back
    and raised once the task has ended."""
    cancelled_meanwhile = False
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
        except asyncio.CancelledError:
            cancelled_meanwhile = True
    if not task.cancelled():
        task.exception()  # retrieved: the caller is ending, not using it
    if cancelled_meanwhile:
        raise asyncio.CancelledError


class RedisChannelLayer(_RedisChannelLayer):
    async def receive(self, channel: str) -> dict[str, Any]:
        receiving = asyncio.ensure_future(self._receive_retrying(channel))
        try:
            return await asyncio.shield(receiving)
        except asyncio.CancelledError:
            await end_task(receiving)
            raise

    async def _receive_retrying(self, channel: str) -> dict[str, Any]:
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                message: dict[str, Any] = await super().receive(channel)
                return message
            except REDIS_AWAY as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # channels_redis's clean-up of a cancelled receive re-raises
                    # a helper task's connection error in place of the
                    # cancellation: the consumer is ending, not waiting.
                    raise asyncio.CancelledError from exc
                log.warning("channel layer: Redis unreachable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def group_discard(self, group: str, channel: str) -> None:
        try:
            await super().group_discard(group, channel)
        except REDIS_AWAY as exc:
            log.warning(
                "channel layer: %s left %s while Redis was unreachable: %s", channel, group, exc
            )
