"""No state-changing request without a CSRF token, on every URL of the site.

Every route (tests/support/site_urls.py walks the URLconf) is POSTed, PUT,
PATCHed and DELETEd without a token by a signed-in user who could otherwise
use it: each must answer 403 with Django's CSRF refusal (a view that only
reads is refused the same way, before it runs). The API under /api/v1 takes
no cookies: a session alone gets 401 and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.conftest import World
from tests.support.site_urls import (
    ROUTES,
    alices_things,
    api_routes,
    route_of,
    row_counts,
    unlisted_routes,
    url_for,
)

UNSAFE = ["post", "put", "patch", "delete"]


@pytest.fixture
def things(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    return alices_things(world, monkeypatch, tmp_path)


def signed_in(world: World, persona: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(getattr(world, persona))
    return client


def csrf_refusal(response: Any) -> bool:
    templates = [template.name for template in response.templates]
    return response.status_code == 403 and "403_csrf.html" in templates


def test_every_url_is_listed() -> None:
    assert unlisted_routes() == [], "give each new URL a line in tests/support/site_urls.ROUTES"


@pytest.mark.parametrize("route", list(ROUTES))
def test_no_unsafe_request_without_a_csrf_token(
    world: World, things: dict[str, object], route: str
) -> None:
    client = signed_in(world, route_of(route).who.persona)
    url = url_for(route, things, world)
    for method in UNSAFE:
        response: Any = getattr(client, method)(url)
        assert csrf_refusal(response), f"{method.upper()} {url}: {response.status_code}"


@pytest.mark.parametrize("route", api_routes())
def test_the_api_ignores_a_session_cookie(
    world: World, things: dict[str, object], route: str
) -> None:
    client = signed_in(world, "alice")
    url = url_for(route, things, world)
    before = row_counts()
    for method in UNSAFE:
        response: Any = getattr(client, method)(url)
        # 405: the path has no such method; the API's pages that are plain
        # Django views (docs, schema, the catch-all) refuse for CSRF.
        assert response.status_code in (401, 405) or csrf_refusal(response), (
            f"{method.upper()} {url}: {response.status_code}"
        )
    assert row_counts() == before
