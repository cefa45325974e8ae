"""Each persona sees what is theirs, and gets 404 (never 403) for the rest."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import World, client_for


def test_anonymous_visitor_is_sent_to_login(world: World) -> None:
    for url in ["/", "/courses/kernel-internals/", "/exercises/hello-module/"]:
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_student_dashboard_lists_only_their_assignments(world: World) -> None:
    page = client_for(world.alice).get("/").content.decode()
    assert "Hello, kernel module" in page
    assert "Tracing system calls" not in page

    page = client_for(world.bob).get("/").content.decode()
    assert "Tracing system calls" in page
    assert "Hello, kernel module" not in page


def test_dashboard_shows_deadline(world: World) -> None:
    page = client_for(world.alice).get("/").content.decode()
    assert world.hello.due_at.strftime("%Y-%m-%dT%H:%M:%S") in page


def test_student_opens_own_exercise_and_course(world: World) -> None:
    alice = client_for(world.alice)
    assert alice.get("/exercises/hello-module/").status_code == 200
    assert alice.get("/courses/kernel-internals/").status_code == 200


@pytest.mark.parametrize(
    ("persona", "url"),
    [
        ("alice", "/exercises/strace-syscalls/"),
        ("alice", "/courses/systems/"),
        ("bob", "/exercises/hello-module/"),
        ("bob", "/courses/kernel-internals/"),
        ("charlie", "/courses/kernel-internals/"),
        ("charlie", "/exercises/hello-module/"),
        ("alice", "/exercises/no-such-exercise/"),
    ],
)
def test_other_peoples_things_are_404(world: World, persona: str, url: str) -> None:
    response = client_for(getattr(world, persona)).get(url)
    assert response.status_code == 404
    assert b"belongs to someone else" in response.content


def test_instructor_sees_their_cohort_not_the_other(world: World) -> None:
    tess = client_for(world.tess)
    page = tess.get("/").content.decode()
    assert "Cohorts you teach" in page
    assert "Autumn" in page
    assert "Spring" not in page
    course_page = tess.get("/courses/kernel-internals/").content.decode()
    assert "Hello, kernel module" in course_page
    assert client_for(world.charlie).get("/courses/systems/").status_code == 200


def test_exercise_set_to_a_cohort_the_student_left_disappears(world: World) -> None:
    world.alice.enrolments.all().delete()
    assert client_for(world.alice).get("/exercises/hello-module/").status_code == 404


def test_inactive_exercise_is_hidden(world: World) -> None:
    world.hello.exercise.is_active = False
    world.hello.exercise.save()
    alice = client_for(world.alice)
    assert "Hello, kernel module" not in alice.get("/").content.decode()
    assert alice.get("/exercises/hello-module/").status_code == 404


def test_admin_is_for_staff_only(world: World) -> None:
    assert client_for(world.alice).get("/admin/").status_code == 302
    world.tess.is_staff = True
    world.tess.is_superuser = True
    world.tess.save()
    assert client_for(world.tess).get("/admin/courses/assignment/").status_code == 200
