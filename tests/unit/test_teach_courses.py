"""/teach/: courses and cohorts an instructor runs, archiving, the audit log, the dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.audit import audit_record
from labplatform.courses.models import AuditEntry, Cohort, Course, Enrolment, Role
from tests.conftest import World, client_for
from tests.support.roster import make_ta

COHORT_FORM = {
    "name": "Winter",
    "slug": "winter",
    "starts_on": "2026-01-05",
    "ends_on": "2026-03-27",
    "time_zone": "Europe/Paris",
    "max_running_vms": "25",
}


def grant_course_creation(user: User) -> None:
    user.user_permissions.add(Permission.objects.get(codename="add_course"))


def url(world: World, name: str) -> str:
    """Each page and action of this part, for the autumn cohort or its course."""
    if name in {"teach_home", "course_create"}:
        return reverse(name)
    if name.startswith("course_") or name == "cohort_create":
        return reverse(name, args=[world.kernel_course.slug])
    return reverse(name, args=[world.autumn.pk])


def persona(world: World, who: str) -> User:
    return make_ta(world) if who == "tara" else getattr(world, who)


# (URL name, GET or POST data, whether a TA may: the audit log only)
ENDPOINTS = [
    ("course_edit", None, False),
    ("course_edit", {"title": "Renamed", "slug": "kernel-internals"}, False),
    ("course_archive", {"archived": "1"}, False),
    ("cohort_create", None, False),
    ("cohort_create", COHORT_FORM, False),
    ("cohort_edit", None, False),
    ("cohort_edit", COHORT_FORM, False),
    ("cohort_archive", {"archived": "1"}, False),
    ("cohort_audit", None, True),
]


def call(client: Client, target: str, data: dict[str, str] | None) -> int:
    response = client.get(target) if data is None else client.post(target, data)
    return response.status_code


@pytest.mark.parametrize(("name", "data", "ta_may"), ENDPOINTS)
@pytest.mark.parametrize("who", ["alice", "charlie", "tara"])
def test_others_get_404_and_change_nothing(
    world: World, name: str, data: dict[str, str] | None, ta_may: bool, who: str
) -> None:
    client = client_for(persona(world, who))
    status = call(client, url(world, name), data)
    assert status == (200 if who == "tara" and ta_may else 404)
    assert not AuditEntry.objects.exists()
    assert Cohort.objects.count() == 2
    assert Course.objects.get(slug="kernel-internals").title == "Linux Kernel Internals"


@pytest.mark.parametrize(("name", "data", "ta_may"), ENDPOINTS)
def test_the_instructor_may_and_anonymous_is_sent_to_login(
    world: World, name: str, data: dict[str, str] | None, ta_may: bool
) -> None:
    assert call(client_for(world.tess), url(world, name), data) in {200, 302}
    if data is not None:
        assert AuditEntry.objects.exists()
    response = Client().get(url(world, name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- /teach/ -------------------------------------------------------------------------------


def test_teach_home_lists_what_i_teach(world: World) -> None:
    page = client_for(world.tess).get(reverse("teach_home"))
    assert [row.cohort for row in page.context["current"]] == [world.autumn]
    assert page.context["archived"] == []
    html = page.content.decode()
    assert "Linux Kernel Internals" in html
    assert "Systems Programming" not in html
    assert 'href="/teach/courses/new"' not in html  # tess may not create courses


def test_a_ta_sees_their_cohort_without_instructor_actions(world: World) -> None:
    page = client_for(make_ta(world)).get(reverse("teach_home")).content.decode()
    assert reverse("cohort_roster", args=[world.autumn.pk]) in page
    assert reverse("cohort_edit", args=[world.autumn.pk]) not in page
    assert reverse("course_edit", args=[world.kernel_course.slug]) not in page


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_teach_home_is_404_to_students(world: World, who: str) -> None:
    assert client_for(getattr(world, who)).get(reverse("teach_home")).status_code == 404


def test_teach_home_is_for_anonymous_a_login(world: World) -> None:
    response = Client().get(reverse("teach_home"))
    assert response["Location"].startswith(reverse("login"))


def test_nav_shows_teach_to_staff_only(world: World) -> None:
    assert ">Teach</a>" in client_for(world.tess).get("/").content.decode()
    assert ">Teach</a>" in client_for(make_ta(world)).get("/").content.decode()
    assert ">Teach</a>" not in client_for(world.alice).get("/").content.decode()


# --- creating a course ----------


NEW_COURSE = {
    "title": "eBPF in practice",
    "slug": "ebpf",
    "description": "",
    "cohort_name": "Spring 2026",
    "time_zone": "America/New_York",
}


@pytest.mark.parametrize("who", ["alice", "tess"])
def test_creating_a_course_needs_the_permission(world: World, who: str) -> None:
    client = client_for(getattr(world, who))
    assert client.get(reverse("course_create")).status_code == 404
    assert client.post(reverse("course_create"), NEW_COURSE).status_code == 404
    assert not Course.objects.filter(slug="ebpf").exists()


def test_anonymous_creating_a_course_is_sent_to_login(world: World) -> None:
    response = Client().post(reverse("course_create"), NEW_COURSE)
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("how", ["permission", "is_staff"])
def test_the_creator_teaches_the_first_cohort(world: World, how: str) -> None:
    if how == "permission":
        grant_course_creation(world.tess)
    else:
        world.tess.is_staff = True
        world.tess.save()
    tess = client_for(world.tess)
    assert 'href="/teach/courses/new"' in tess.get(reverse("teach_home")).content.decode()
    response = tess.post(reverse("course_create"), NEW_COURSE)
    cohort = Cohort.objects.get(course__slug="ebpf")
    assert response["Location"] == reverse("cohort_roster", args=[cohort.pk])
    assert (cohort.name, cohort.slug, cohort.time_zone) == (
        "Spring 2026",
        "spring-2026",
        "America/New_York",
    )
    assert Enrolment.objects.get(cohort=cohort).user == world.tess
    assert Enrolment.objects.get(cohort=cohort).role == Role.INSTRUCTOR
    assert AuditEntry.objects.get(cohort=cohort).action == "course.create"


def test_a_course_slug_is_unique(world: World) -> None:
    grant_course_creation(world.tess)
    response = client_for(world.tess).post(
        reverse("course_create"), {**NEW_COURSE, "slug": "systems"}
    )
    assert response.status_code == 200
    assert "slug" in response.context["form"].errors
    assert Course.objects.count() == 2


# --- editing and cohorts ----------


def test_editing_a_course_is_audited_in_its_cohorts(world: World) -> None:
    client_for(world.tess).post(
        url(world, "course_edit"),
        {"title": "Kernel Internals", "slug": "kernel-internals", "description": "New"},
    )
    world.kernel_course.refresh_from_db()
    assert world.kernel_course.title == "Kernel Internals"
    entry = AuditEntry.objects.get(cohort=world.autumn)
    assert entry.action == "course.edit"
    assert entry.detail["changed"]["title"] == ["Linux Kernel Internals", "Kernel Internals"]


def test_editing_a_cohort(world: World) -> None:
    response = client_for(world.tess).post(url(world, "cohort_edit"), COHORT_FORM)
    assert response.status_code == 302
    world.autumn.refresh_from_db()
    assert (world.autumn.slug, world.autumn.time_zone, world.autumn.max_running_vms) == (
        "winter",
        "Europe/Paris",
        25,
    )
    entry = AuditEntry.objects.get()
    assert entry.action == "cohort.edit"
    assert set(entry.detail["changed"]) == {
        "name",
        "slug",
        "starts_on",
        "ends_on",
        "time_zone",
        "max_running_vms",
    }


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("time_zone", "Mars/Olympus", "time_zone"),
        ("ends_on", "2025-12-01", "ends_on"),
    ],
)
def test_a_bad_cohort_setting_is_refused(world: World, field: str, value: str, error: str) -> None:
    response = client_for(world.tess).post(url(world, "cohort_edit"), {**COHORT_FORM, field: value})
    assert response.status_code == 200
    assert error in response.context["form"].errors
    world.autumn.refresh_from_db()
    assert world.autumn.name == "Autumn"
    assert not AuditEntry.objects.exists()


def test_a_new_cohort_is_taught_by_its_creator_and_its_slug_is_unique(world: World) -> None:
    tess = client_for(world.tess)
    tess.post(url(world, "cohort_create"), COHORT_FORM)
    winter = Cohort.objects.get(course=world.kernel_course, slug="winter")
    assert Enrolment.objects.get(cohort=winter).user == world.tess
    response = tess.post(url(world, "cohort_create"), {**COHORT_FORM, "name": "Again"})
    assert "Another cohort of this course has this slug." in response.content.decode()
    # The same slug in another course is fine: slugs are per course.
    assert Cohort.objects.filter(slug="winter").count() == 1


# --- archiving ----------


@pytest.mark.parametrize("what", ["cohort_archive", "course_archive"])
def test_archiving_hides_from_dashboards_and_unarchiving_restores(world: World, what: str) -> None:
    tess = client_for(world.tess)
    tess.post(url(world, what), {"archived": "1"})
    assert "Hello, kernel module" not in client_for(world.alice).get("/").content.decode()
    assert "Cohorts you teach" not in tess.get("/").content.decode()
    home = tess.get(reverse("teach_home"))
    assert home.context["current"] == []
    assert [row.cohort for row in home.context["archived"]] == [world.autumn]
    assert 'data-testid="archived"' in home.content.decode()

    tess.post(url(world, what), {"archived": "0"})
    assert "Hello, kernel module" in client_for(world.alice).get("/").content.decode()
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    noun = what.split("_")[0]
    assert actions == [f"{noun}.archive", f"{noun}.unarchive"]


# --- the audit log ----------


def test_the_audit_log_is_newest_first_filtered_and_paginated(world: World) -> None:
    for n in range(55):
        audit_record(
            cohort=world.autumn, actor=world.tess, action="roster.add", summary=f"Added {n}"
        )
    audit_record(cohort=world.autumn, actor=world.tess, action="grade.override", summary="Graded")
    audit_record(cohort=world.spring, actor=world.charlie, action="roster.add", summary="Spring")
    tess = client_for(world.tess)
    page = tess.get(url(world, "cohort_audit"))
    entries = list(page.context["entries"])
    assert entries[0].summary == "Graded"
    assert len(entries) == 50
    assert page.context["actions"] == ["grade", "roster"]
    assert "Spring" not in page.content.decode()

    filtered = tess.get(url(world, "cohort_audit"), {"action": "roster"})
    assert {entry.action for entry in filtered.context["entries"]} == {"roster.add"}
    assert filtered.context["entries"][0].summary == "Added 54"
    assert 'href="?action=roster&amp;page=2"' in filtered.content.decode()
    second = tess.get(url(world, "cohort_audit"), {"action": "roster", "page": "2"})
    assert [entry.summary for entry in second.context["entries"]] == [
        f"Added {n}" for n in range(4, -1, -1)
    ]


# --- the dashboard ----------


def test_the_dashboard_links_cohorts_i_teach_to_teach(world: World) -> None:
    page = client_for(world.tess).get("/")
    html = page.content.decode()
    assert 'data-testid="teach-home"' in html
    assert f'href="{reverse("teach_home")}"' in html
    [row] = page.context["teaching"]
    assert row.cohort == world.autumn
    assert f"/teach/cohorts/{world.autumn.pk}/" in html


def test_a_ta_sees_their_cohort_on_the_dashboard(world: World) -> None:
    page = client_for(make_ta(world)).get("/").content.decode()
    assert "Cohorts you teach" in page
    assert "Teaching assistant" in page


def test_an_archived_cohort_leaves_the_students_dashboard_only_when_archived(world: World) -> None:
    world.spring.archived_at = timezone.now()
    world.spring.save()
    assert "Hello, kernel module" in client_for(world.alice).get("/").content.decode()
    assert "Tracing system calls" not in client_for(world.bob).get("/").content.decode()
