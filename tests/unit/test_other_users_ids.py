"""Another user's ids in every URL: 404, never 200, 302 or 403.

For each route whose path names something a user (or a cohort) owns,
tests/support/site_urls.py fills it with alice's things (or tess's cohort's);
bob, a student elsewhere, or charlie, an instructor elsewhere, asks for them
with GET and POST and gets, for the method the view takes, the same 404 as
for something that does not exist; nothing changes. Then alice (tess) uses
the same URL, so the 404 was not for a bad id. tests/unit/test_personas.py holds the persona
pages; the API's routes are covered by tests/unit/test_api_access.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import World, client_for
from tests.support.site_urls import ROUTES, alices_things, route_of, row_counts, url_for

OWNED = [route for route, spec in ROUTES.items() if spec.owned]


def test_the_table_names_owned_routes() -> None:
    # test_csrf_everywhere.test_every_url_is_listed keeps ROUTES complete.
    assert len(OWNED) >= 50


@pytest.mark.parametrize("route", OWNED)
def test_a_stranger_gets_404_for_alices_things(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, route: str
) -> None:
    things = alices_things(world, monkeypatch, tmp_path)
    url = url_for(route, things, world)
    stranger = client_for(getattr(world, route_of(route).who.stranger))
    before = row_counts()
    codes = {
        method: getattr(stranger, method.lower())(url).status_code for method in ("GET", "POST")
    }
    # 405 (the view takes the other method) comes before any lookup, the
    # same for any id: it tells nothing.
    assert set(codes.values()) <= {404, 405}, f"{url}: {codes}"
    assert 404 in codes.values(), f"{url}: {codes}"
    assert row_counts() == before
    # The same URL is alice's (tess's) to use: the 404 was for the stranger.
    owner = client_for(getattr(world, route_of(route).who.persona))
    mine = {method: getattr(owner, method.lower())(url).status_code for method in ("GET", "POST")}
    assert any(code not in (404, 405) for code in mine.values()), f"{url} for its owner: {mine}"
