"""A student with the browser's developer tools fires many requests at once
(Promise.all of fetch()): every one must be counted. A throttle that reads
its history, decides, then writes it back lets all requests in flight pass,
each having read the same history."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache
from django.test import RequestFactory
from ninja.throttling import SimpleRateThrottle

from labplatform.api.auth import TokenRateThrottle
from labplatform.ratelimits import UserRateThrottle
from tests.conftest import World

IN_FLIGHT = 12


def allowed_at_once(throttle_for: Callable[[], SimpleRateThrottle], request: Any) -> int:
    """How many of IN_FLIGHT requests arriving together the throttle lets in,
    with a cache as slow as a network round trip to Redis."""
    barrier = threading.Barrier(IN_FLIGHT)
    answers: list[bool] = []
    real_get = LocMemCache.get

    def slow_get(*args: Any, **kwargs: Any) -> Any:
        value = real_get(*args, **kwargs)
        time.sleep(0.02)
        return value

    def one() -> None:
        throttle = throttle_for()
        barrier.wait()
        answers.append(throttle.allow_request(request))

    # Each thread has its own cache object (sharing one store): slow them all.
    with mock.patch.object(LocMemCache, "get", autospec=True, side_effect=slow_get):
        threads = [threading.Thread(target=one) for _ in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(answers)


@pytest.fixture(autouse=True)
def _own_counts() -> Any:
    cache.clear()
    yield
    cache.clear()


def test_a_students_parallel_starts_are_all_counted(world: World, settings: Any) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "lab": "3/min"}
    request = RequestFactory().post("/labs/start")
    request.user = world.alice
    assert allowed_at_once(lambda: UserRateThrottle("lab"), request) == 3
    assert not UserRateThrottle("lab").allow_request(request)


def test_a_tokens_parallel_requests_are_all_counted(world: World, settings: Any) -> None:
    settings.API_RATE_LIMIT = "4/min"
    request = RequestFactory().get("/api/v1/exercises")
    request.user = AnonymousUser()
    request.auth = "a token"  # type: ignore[attr-defined]  # keyed by a hash of str(auth)
    assert allowed_at_once(TokenRateThrottle, request) == 4


def test_retry_after_is_when_the_window_reopens(world: World, settings: Any) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "check": "1/min"}
    request = RequestFactory().post("/check")
    request.user = world.alice
    first = UserRateThrottle("check")
    with mock.patch.object(first, "timer", return_value=6000.0 + 15):
        assert first.allow_request(request)
    refused = UserRateThrottle("check")
    with mock.patch.object(refused, "timer", return_value=6000.0 + 20):
        assert not refused.allow_request(request)
        assert refused.retry_after() == 40
    later = UserRateThrottle("check")
    with mock.patch.object(later, "timer", return_value=6000.0 + 61):
        assert later.allow_request(request)
