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


class RedisChannelLayer(_RedisChannelLayer):
    async def receive(self, channel: str) -> dict[str, Any]:
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
