"""Every URL of the site, and what the access tests need to call each one.

`site_routes()` walks the real URLconf; `ROUTES` says, for each route, who
may use it and whether its path names something a user owns. A URL added
later and missing from ROUTES fails tests/unit/test_csrf_everywhere.py and
tests/unit/test_other_users_ids.py until it is given a line here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from exercises.models import AttemptComment
from labplatform.api.models import Scope
from labplatform.api.services import token_create, webhook_endpoint_create
from labplatform.courses.models import RegradeJob, RegradeScope
from tests.support.api import alice_lab_and_attempt
from tests.support.dns import PUBLIC_ADDRESS, fake_dns
from vms.models import ConsoleMode, ConsoleSession

ADMIN = "admin/"  # Django's own admin: csrf_protect'ed and staff-only by Django
API = "api/v1/"  # token-authenticated (no cookies): tests/unit/test_api_access.py


class Who(enum.Enum):
    """Who uses the route: the persona the tests sign in as."""

    ANYONE = "anyone"  # public or any signed-in user
    STUDENT = "student"
    TEACHER = "teacher"
    API = "api"

    @property
    def persona(self) -> str:
        """Who signs in to use it (of tests.conftest.World)."""
        return "tess" if self is Who.TEACHER else "alice"

    @property
    def stranger(self) -> str:
        """Who must get 404 for alice's (or her cohort's) things."""
        return "charlie" if self is Who.TEACHER else "bob"


@dataclass(frozen=True)
class Route:
    who: Who
    owned: bool  # the path names a user's, or a cohort's, object


STUDENT, OWNED = Route(Who.STUDENT, False), Route(Who.STUDENT, True)
TEACHER, TEACHERS = Route(Who.TEACHER, False), Route(Who.TEACHER, True)
PUBLIC, API_ROUTE = Route(Who.ANYONE, False), Route(Who.API, False)

ROUTES: dict[str, Route] = {
    "": STUDENT,
    "accounts/login/": PUBLIC,
    "accounts/logout/": PUBLIC,
    "accounts/password/change/": PUBLIC,
    "accounts/password/change/done/": PUBLIC,
    "accounts/password/reset/": PUBLIC,
    "accounts/password/reset/sent/": PUBLIC,
    "accounts/password/reset/<uidb64>/<token>/": PUBLIC,
    "accounts/password/reset/complete/": PUBLIC,
    "api/kernellab-cli.py": PUBLIC,
    "healthz": PUBLIC,
    "metrics": PUBLIC,
    "staff/status": PUBLIC,
    "staff/hosts/<slug:name>/drain": PUBLIC,  # staff only: 404 for everyone else
    "staff/hosts/<slug:name>/undrain": PUBLIC,
    "settings/api/": STUDENT,
    "settings/api/tokens": STUDENT,
    "settings/api/tokens/<int:token_id>/revoke": OWNED,
    "settings/api/webhooks": STUDENT,
    "settings/api/webhooks/<int:endpoint_id>/delete": OWNED,
    "settings/api/webhooks/<int:endpoint_id>/test": OWNED,
    "courses/<slug:slug>/": OWNED,
    "exercises/attempts/<int:attempt_id>": OWNED,
    "exercises/attempts/<int:attempt_id>/": OWNED,
    "exercises/attempts/<int:attempt_id>/files.tar.gz": OWNED,
    "exercises/<slug:slug>/": OWNED,
    "exercises/<slug:slug>/start": OWNED,
    "exercises/<slug:slug>/check": OWNED,
    "exercises/<slug:slug>/submit": OWNED,
    "vms/<str:vm_id>/stop": OWNED,
    "vms/<str:vm_id>/resume": OWNED,
    "vms/<str:vm_id>/reset": OWNED,
    "vms/<str:vm_id>/destroy": OWNED,
    "vms/<str:vm_id>/status": OWNED,
    "vms/<str:vm_id>/console-token": OWNED,
    "vms/<str:vm_id>/files/upload": OWNED,
    "vms/<str:vm_id>/files/download": OWNED,
    "vms/<str:vm_id>/kernel-log": OWNED,
    "vms/<str:vm_id>/watch": OWNED,
    "vms/<str:vm_id>/recordings/": OWNED,
    "recordings/<str:session_id>/": OWNED,
    "recordings/<str:session_id>.cast": OWNED,
    "teach/": TEACHER,
    "teach/courses/new": TEACHER,
    "teach/courses/<slug:slug>/edit": TEACHERS,
    "teach/courses/<slug:slug>/archive": TEACHERS,
    "teach/courses/<slug:slug>/cohorts/new": TEACHERS,
    "teach/cohorts/<int:cohort_id>/edit": TEACHERS,
    "teach/cohorts/<int:cohort_id>/archive": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/import": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/add": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/<int:student_id>/remove": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/<int:student_id>/invite": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/staff/add": TEACHERS,
    "teach/cohorts/<int:cohort_id>/roster/staff/<int:user_id>/remove": TEACHERS,
    "teach/cohorts/<int:cohort_id>/audit/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/assignments/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/assignments/new": TEACHERS,
    "teach/cohorts/<int:cohort_id>/assignments/<int:assignment_id>/edit": TEACHERS,
    "teach/cohorts/<int:cohort_id>/assignments/<int:assignment_id>/extensions/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/assignments/<int:assignment_id>/students/<int:student_id>/override": TEACHERS,  # noqa: E501
    "teach/cohorts/<int:cohort_id>/assignments/<int:assignment_id>/regrade": TEACHERS,
    "teach/cohorts/<int:cohort_id>/assignments/<int:assignment_id>/students/<int:student_id>/regrade": TEACHERS,  # noqa: E501
    "teach/attempts/<int:attempt_id>/regrade": TEACHERS,
    "teach/regrades/<int:job_id>": TEACHERS,
    "teach/cohorts/<int:cohort_id>/gradebook/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/gradebook.csv": TEACHERS,
    "teach/cohorts/<int:cohort_id>/gradebook.json": TEACHERS,
    "teach/cohorts/<int:cohort_id>/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/board/cell": TEACHERS,
    "teach/cohorts/<int:cohort_id>/students/<int:student_id>/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/vms/": TEACHERS,
    "teach/cohorts/<int:cohort_id>/vms/<uuid:vm_id>/stop": TEACHERS,
    "teach/cohorts/<int:cohort_id>/vms/<uuid:vm_id>/destroy": TEACHERS,
    "teach/attempts/<int:attempt_id>/comment": TEACHERS,
}


def site_routes() -> list[str]:
    """Every route of the site but Django's admin, once each (the API's
    methods on one path share one route)."""

    def walk(patterns: list[Any], prefix: str) -> list[str]:
        routes: list[str] = []
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route != ADMIN:
                    routes += walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                routes.append(route)
        return routes

    return list(dict.fromkeys(walk(get_resolver().url_patterns, "")))


def route_of(route: str) -> Route:
    return API_ROUTE if route.startswith((API, "^" + API)) else ROUTES[route]


def api_routes() -> list[str]:
    return [r for r in site_routes() if r.startswith((API, "^" + API))]


def unlisted_routes() -> list[str]:
    """Routes of the site missing from ROUTES, and lines of ROUTES no longer routes."""
    routes = set(site_routes()) - set(api_routes())
    return sorted(routes.symmetric_difference(ROUTES))


def alices_things(world: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """Alice's (and her cohort's) objects, by the name of the path parameter."""
    fake_dns(monkeypatch, {"hooks.example.org": PUBLIC_ADDRESS})
    vm, attempt = alice_lab_and_attempt(world)
    recording = tmp_path / "session.cast"
    recording.write_text('{"version": 2, "width": 80, "height": 24}\n')
    session = ConsoleSession.objects.create(
        vm=vm, user=world.alice, mode=ConsoleMode.READ_WRITE, recording=str(recording)
    )
    api_token, _ = token_create(user=world.alice, name="ci", scopes=[Scope.READ])
    webhook = webhook_endpoint_create(user=world.alice, url="https://hooks.example.org/k")
    job = RegradeJob.objects.create(
        assignment=world.hello, scope=RegradeScope.ATTEMPT, attempt=attempt, created_by=world.tess
    )
    AttemptComment.objects.create(attempt=attempt, author=world.tess, body="Nice work")
    return {
        "vm_id": vm.pk,
        "webhook_id": webhook.pk,
        "attempt_id": attempt.pk,
        "session_id": session.pk,
        "token_id": api_token.pk,
        "endpoint_id": webhook.pk,
        "job_id": job.pk,
        "cohort_id": world.autumn.pk,
        "assignment_id": world.hello.pk,
        "student_id": world.alice.pk,
        "user_id": world.tess.pk,
        "uidb64": "MQ",
        "token": "set-password",
        "path": "no-such-thing",
        "name": "local",  # a hypervisor host
    }


def row_counts() -> dict[str, int]:
    """Rows of every model: what a refused request must leave as it was."""
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def url_for(route: str, things: dict[str, object], world: Any) -> str:
    """The route with alice's things in its parameters."""
    course = route.startswith(("courses/", "teach/courses/"))
    values = {**things, "slug": world.kernel_course.slug if course else world.hello.exercise.slug}
    if route.startswith("^"):  # the API's catch-all
        return "/" + API + str(values["path"])

    def fill(match: re.Match[str]) -> str:
        return str(values[match.group(1)])

    url = "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, route)
    if route.endswith("board/cell"):
        url += f"?student={values['student_id']}&assignment={values['assignment_id']}"
    return url
