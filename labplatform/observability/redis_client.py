"""A short-timeout Redis client for health checks, queue depths and heartbeats:
a check must answer within a second or two, never hang a load balancer."""

from __future__ import annotations

import functools

import redis
from django.conf import settings

REDIS_TIMEOUT_SECONDS = 1.0


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )


def redis_client() -> redis.Redis:
    """The broker's Redis (settings.REDIS_URL), one client per URL per process."""
    return _client(settings.REDIS_URL)
