"""Every endpoint refuses a missing, unknown, revoked, expired or
out-of-scope token with a problem; other people's things are 404."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from labplatform.api.models import ApiToken, Scope
from labplatform.api.services import token_revoke, webhook_endpoint_create
from tests.conftest import World
from tests.support.api import ApiClient, alice_lab_and_attempt, tar_gz, token_for
from tests.support.dns import PUBLIC_ADDRESS, fake_dns

HOOK = "https://hooks.example.org/kernellab"

# (method, path, the scope it needs); {vm}, {attempt}, {webhook} are alice's, {cohort} autumn.
ENDPOINTS = [
    ("GET", "/exercises", Scope.READ),
    ("GET", "/exercises/hello-module", Scope.READ),
    ("POST", "/exercises/hello-module/lab", Scope.LABS),
    ("GET", "/labs", Scope.READ),
    ("GET", "/labs/{vm}", Scope.READ),
    ("POST", "/labs/{vm}/stop", Scope.LABS),
    ("POST", "/labs/{vm}/resume", Scope.LABS),
    ("POST", "/labs/{vm}/reset", Scope.LABS),
    ("POST", "/labs/{vm}/destroy", Scope.LABS),
    ("POST", "/exercises/hello-module/attempts", Scope.SUBMIT),
    ("POST", "/exercises/hello-module/submissions", Scope.SUBMIT),
    ("GET", "/attempts", Scope.READ),
    ("GET", "/attempts/{attempt}", Scope.READ),
    ("GET", "/attempts/{attempt}/files", Scope.READ),
    ("GET", "/cohorts", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/roster", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/assignments", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/gradebook", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/gradebook.csv", Scope.COHORT_ADMIN),
    ("GET", "/webhooks", Scope.READ),
    ("POST", "/webhooks", Scope.WEBHOOKS),
    ("GET", "/webhooks/{webhook}", Scope.READ),
    ("DELETE", "/webhooks/{webhook}", Scope.WEBHOOKS),
    ("GET", "/webhooks/{webhook}/deliveries", Scope.READ),
    ("POST", "/webhooks/{webhook}/test", Scope.WEBHOOKS),
]
IDS = [f"{method} {path}" for method, path, _ in ENDPOINTS]


@pytest.fixture
def things(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    vm, attempt = alice_lab_and_attempt(world)
    fake_dns(monkeypatch, {"hooks.example.org": PUBLIC_ADDRESS})
    webhook = webhook_endpoint_create(user=world.alice, url=HOOK)
    return {"vm": vm.pk, "attempt": attempt.pk, "cohort": world.autumn.pk, "webhook": webhook.pk}


@pytest.fixture(autouse=True)
def no_enqueue() -> Any:
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


def call(client: ApiClient, method: str, path: str, things: dict[str, Any]) -> Any:
    """The request, with a valid body where the endpoint takes one."""
    body: dict[str, Any] = {}
    if path.endswith("/attempts"):
        body = {"data": {"kind": "check"}, "content_type": "application/json"}
    elif method == "POST" and path == "/webhooks":
        body = {"data": {"url": HOOK}, "content_type": "application/json"}
    elif path.endswith("/submissions"):
        archive = tar_gz({"root/work/hello.c": b"int x;\n"})
        body = {"data": {"archive": SimpleUploadedFile("work.tar.gz", archive)}}
    return client.request(method, path.format(**things), **body)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:kernellab:problem:{code}"
    assert body["title"]
    assert body["detail"]
    return body


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=IDS)
def test_no_token_is_401(world: World, things: Any, method: str, path: str, scope: Scope) -> None:
    response = call(ApiClient(None), method, path, things)
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=IDS)
def test_unknown_token_is_401(
    world: World, things: Any, method: str, path: str, scope: Scope
) -> None:
    assert_problem(call(ApiClient("klab_nope"), method, path, things), 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=IDS)
def test_revoked_token_is_401(
    world: World, things: Any, method: str, path: str, scope: Scope
) -> None:
    raw = token_for(world.alice, scope)
    token_revoke(token=ApiToken.objects.get(user=world.alice))
    assert_problem(call(ApiClient(raw), method, path, things), 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=IDS)
def test_expired_token_is_401(
    world: World, things: Any, method: str, path: str, scope: Scope
) -> None:
    raw = token_for(world.alice, scope, expires_at=timezone.now() + timedelta(hours=1))
    # An hour later: it expired a second ago.
    ApiToken.objects.filter(user=world.alice).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_problem(call(ApiClient(raw), method, path, things), 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=IDS)
def test_token_without_the_scope_is_403(
    world: World, things: Any, method: str, path: str, scope: Scope
) -> None:
    others = [s for s in Scope if s != scope]
    body = assert_problem(
        call(ApiClient(token_for(world.alice, *others)), method, path, things),
        403,
        "insufficient_scope",
    )
    assert scope.value in body["detail"]


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS, ids=IDS)
def test_token_with_the_scope_alone_gets_through(
    world: World, things: Any, method: str, path: str, scope: Scope
) -> None:
    """The owner (alice; tess for cohorts) with only that scope is not
    refused for authentication or scope (a 409/422 about the lab is fine)."""
    user = world.tess if scope == Scope.COHORT_ADMIN else world.alice
    response = call(ApiClient(token_for(user, scope)), method, path, things)
    assert response.status_code not in (401, 403, 404), response.content
    assert response.status_code < 500


# -- other people's things ---------------------------------------------------------

OWNED = [
    ("GET", "/exercises/hello-module", Scope.READ),
    ("POST", "/exercises/hello-module/lab", Scope.LABS),
    ("GET", "/labs/{vm}", Scope.READ),
    ("POST", "/labs/{vm}/stop", Scope.LABS),
    ("POST", "/labs/{vm}/resume", Scope.LABS),
    ("POST", "/labs/{vm}/reset", Scope.LABS),
    ("POST", "/labs/{vm}/destroy", Scope.LABS),
    ("POST", "/exercises/hello-module/attempts", Scope.SUBMIT),
    ("POST", "/exercises/hello-module/submissions", Scope.SUBMIT),
    ("GET", "/attempts/{attempt}", Scope.READ),
    ("GET", "/attempts/{attempt}/files", Scope.READ),
    ("GET", "/cohorts/{cohort}/roster", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/assignments", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/gradebook", Scope.COHORT_ADMIN),
    ("GET", "/cohorts/{cohort}/gradebook.csv", Scope.COHORT_ADMIN),
    ("GET", "/webhooks/{webhook}", Scope.READ),
    ("DELETE", "/webhooks/{webhook}", Scope.WEBHOOKS),
    ("GET", "/webhooks/{webhook}/deliveries", Scope.READ),
    ("POST", "/webhooks/{webhook}/test", Scope.WEBHOOKS),
]


@pytest.mark.parametrize("persona", ["bob", "charlie"])
@pytest.mark.parametrize(("method", "path", "scope"), OWNED, ids=[f"{m} {p}" for m, p, _ in OWNED])
def test_other_peoples_things_are_404(
    world: World, things: Any, persona: str, method: str, path: str, scope: Scope
) -> None:
    """bob (a student elsewhere) and charlie (instructor of another cohort),
    with every scope, cannot tell alice's things from missing ones."""
    client = ApiClient(token_for(getattr(world, persona)))
    body = assert_problem(call(client, method, path, things), 404, "not_found")
    assert "alice" not in json.dumps(body)


@pytest.mark.parametrize(
    "path",
    ["/labs/{vm}", "/labs/{vm}/stop", "/exercises/hello-module/lab", "/cohorts/{cohort}/gradebook"],
)
def test_alices_instructor_cannot_drive_her_lab_and_she_cannot_read_the_gradebook(
    world: World, things: Any, path: str
) -> None:
    """tess teaches alice: she reads alice's attempts, but a lab is its
    owner's alone; alice is no instructor, so cohorts are 404 to her."""
    user = world.alice if "cohorts" in path else world.tess
    method = "GET" if path in ("/labs/{vm}", "/cohorts/{cohort}/gradebook") else "POST"
    assert_problem(call(ApiClient(token_for(user)), method, path, things), 404, "not_found")


def test_instructor_reads_her_students_attempt(world: World, things: Any) -> None:
    response = ApiClient(token_for(world.tess, Scope.READ)).get(f"/attempts/{things['attempt']}")
    assert response.status_code == 200
    assert response.json()["student"] == "alice"


def test_unknown_api_path_is_a_problem(world: World) -> None:
    assert_problem(ApiClient(token_for(world.alice)).get("/nothing/here"), 404, "not_found")
