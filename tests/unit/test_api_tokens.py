"""API tokens: hashed, shown once, scoped, expiring, revocable, last use recorded."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from labplatform.api.errors import ApiError
from labplatform.api.models import ApiToken, Scope
from labplatform.api.services import (
    LAST_USED_RESOLUTION_SECONDS,
    token_authenticate,
    token_create,
    token_revoke,
)
from tests.conftest import World, client_for


def test_only_the_hash_of_a_token_is_stored(world: World) -> None:
    token, raw = token_create(user=world.alice, name="ci", scopes=[Scope.READ])
    assert raw.startswith("klab_")
    assert len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.secret_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str([getattr(stored, f.attname) for f in ApiToken._meta.fields])
    assert raw.startswith(stored.prefix)
    assert len(stored.prefix) < 16


def test_a_token_needs_a_scope_and_a_future_expiry(world: World) -> None:
    with pytest.raises(ApiError) as no_scope:
        token_create(user=world.alice, name="ci", scopes=[])
    assert no_scope.value.code == "no_scope"
    with pytest.raises(ApiError) as past:
        token_create(
            user=world.alice,
            name="ci",
            scopes=[Scope.READ],
            expires_at=timezone.now() - timedelta(seconds=1),
        )
    assert past.value.code == "expiry_in_past"


def test_scopes_are_stored_once_each_in_order(world: World) -> None:
    token, _ = token_create(
        user=world.alice, name="ci", scopes=[Scope.SUBMIT, Scope.READ, Scope.SUBMIT]
    )
    assert token.scopes == ["read", "submit"]
    assert token.has_scope(Scope.READ)
    assert not token.has_scope(Scope.COHORT_ADMIN)


def test_authenticate_finds_a_live_token_and_records_its_use(world: World) -> None:
    token, raw = token_create(user=world.alice, name="ci", scopes=[Scope.READ])
    found = token_authenticate(raw=raw)
    assert found is not None
    assert found.pk == token.pk
    assert found.user == world.alice
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(world: World) -> None:
    _token, raw = token_create(user=world.alice, name="ci", scopes=[Scope.READ])
    now = timezone.now()
    first = token_authenticate(raw=raw, now=now)
    assert first is not None
    soon = token_authenticate(raw=raw, now=now + timedelta(seconds=5))
    assert soon is not None
    assert soon.last_used_at == now
    later = now + timedelta(seconds=LAST_USED_RESOLUTION_SECONDS + 1)
    again = token_authenticate(raw=raw, now=later)
    assert again is not None
    assert again.last_used_at == later


def test_revoked_expired_unknown_and_inactive_user_tokens_are_refused(world: World) -> None:
    revoked, raw_revoked = token_create(user=world.alice, name="a", scopes=[Scope.READ])
    token_revoke(token=revoked)
    soon = timezone.now() + timedelta(minutes=5)
    _expiring, raw_expiring = token_create(
        user=world.alice, name="b", scopes=[Scope.READ], expires_at=soon
    )
    _bobs, raw_bob = token_create(user=world.bob, name="c", scopes=[Scope.READ])
    world.bob.is_active = False
    world.bob.save()
    assert token_authenticate(raw=raw_revoked) is None
    assert token_authenticate(raw=raw_expiring) is not None
    assert token_authenticate(raw=raw_expiring, now=soon + timedelta(seconds=1)) is None
    assert token_authenticate(raw=raw_revoked + "x") is None
    assert token_authenticate(raw=raw_bob) is None


def test_revoking_twice_keeps_the_first_time(world: World) -> None:
    token, _ = token_create(user=world.alice, name="a", scopes=[Scope.READ])
    first = token_revoke(token=token).revoked_at
    assert first is not None
    assert token_revoke(token=token).revoked_at == first


def test_settings_page_shows_a_new_token_once(world: World) -> None:
    alice = client_for(world.alice)
    response = alice.post(
        "/settings/api/tokens",
        {"name": "CI of os-course", "scopes": ["read", "submit"], "expires_in_days": "30"},
    )
    assert response.status_code == 200
    token = ApiToken.objects.get(user=world.alice)
    secret = response.context["new_secret"]
    assert hashlib.sha256(secret.encode()).hexdigest() == token.secret_sha256
    assert secret in response.content.decode()
    assert token.scopes == ["read", "submit"]
    assert token.expires_at is not None
    assert token.expires_at - timezone.now() > timedelta(days=29)
    later = alice.get("/settings/api/").content.decode()
    assert "CI of os-course" in later
    assert token.prefix in later
    assert secret not in later


def test_settings_page_refuses_a_token_without_scope(world: World) -> None:
    response = client_for(world.alice).post("/settings/api/tokens", {"name": "x", "scopes": []})
    assert response.status_code == 200
    assert not ApiToken.objects.exists()
    assert response.context["token_form"].errors["scopes"]


def test_revoke_from_the_settings_page(world: World) -> None:
    token, raw = token_create(user=world.alice, name="ci", scopes=[Scope.READ])
    response = client_for(world.alice).post(f"/settings/api/tokens/{token.pk}/revoke")
    assert response.status_code == 302
    assert token_authenticate(raw=raw) is None


@pytest.mark.parametrize("persona", ["bob", "tess", "charlie"])
def test_nobody_else_can_revoke_a_token(world: World, persona: str) -> None:
    token, raw = token_create(user=world.alice, name="ci", scopes=[Scope.READ])
    response = client_for(getattr(world, persona)).post(f"/settings/api/tokens/{token.pk}/revoke")
    assert response.status_code == 404
    assert token_authenticate(raw=raw) is not None
