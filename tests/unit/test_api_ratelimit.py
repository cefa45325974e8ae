"""Rate limits per token: 429 with a problem and Retry-After."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from tests.conftest import World
from tests.support.api import ApiClient, token_for


@pytest.fixture(autouse=True)
def small_limit(settings: Any) -> Iterator[None]:
    settings.API_RATE_LIMIT = "3/min"
    cache.clear()
    yield
    cache.clear()


def test_over_the_limit_is_429_with_retry_after(world: World) -> None:
    alice = ApiClient(token_for(world.alice))
    assert [alice.get("/exercises").status_code for _ in range(3)] == [200, 200, 200]
    refused = alice.get("/exercises")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert json.loads(refused.content)["code"] == "rate_limited"
    retry_after = int(refused["Retry-After"])
    assert 0 < retry_after <= 60


def test_the_limit_is_per_token(world: World) -> None:
    first = ApiClient(token_for(world.alice, name="one"))
    for _ in range(3):
        first.get("/exercises")
    assert first.get("/exercises").status_code == 429
    second = ApiClient(token_for(world.alice, name="two"))
    assert second.get("/exercises").status_code == 200


def test_refused_tokens_do_not_reach_the_limit(world: World) -> None:
    """Authentication comes first: a bad token is 401, never 429."""
    stranger = ApiClient("klab_wrong")
    assert {stranger.get("/exercises").status_code for _ in range(5)} == {401}
