"""The roster: who may see and change it, adding and removing students and staff."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from exercises.models import Attempt, AttemptKind
from labplatform.accounts.models import User
from labplatform.courses.models import AuditEntry, Enrolment, Role
from tests.conftest import World, client_for, exercise_version_for, make_user
from tests.support.roster import make_ta, set_password_from_mail


def roster_url(world: World, name: str = "cohort_roster", *args: int) -> str:
    return reverse(name, args=[world.autumn.pk, *args])


def persona(world: World, name: str) -> User:
    return make_ta(world) if name == "tara" else getattr(world, name)


# --- who may do what ----------

# (URL name, extra URL args as attribute names of World, what a TA gets)
PAGES = [("cohort_roster", 200), ("roster_import", 404)]
POSTS = [
    ("roster_add", (), {"identifier": "new@example.org"}),
    ("roster_remove", ("alice",), {}),
    ("roster_invite", ("alice",), {}),
    ("roster_staff_add", (), {"identifier": "bob", "role": "ta"}),
    ("roster_staff_remove", ("tess",), {}),
    ("roster_import", (), {}),
]


def _url(world: World, name: str, users: tuple[str, ...] = ()) -> str:
    return roster_url(world, name, *(getattr(world, user).pk for user in users))


@pytest.mark.parametrize(("name", "ta_status"), PAGES)
@pytest.mark.parametrize("who", ["alice", "charlie", "tara"])
def test_roster_pages_are_404_to_those_who_may_not(
    world: World, name: str, ta_status: int, who: str
) -> None:
    expected = ta_status if who == "tara" else 404
    assert client_for(persona(world, who)).get(_url(world, name)).status_code == expected


@pytest.mark.parametrize(("name", "ta_status"), PAGES)
def test_roster_pages_open_for_the_instructor_and_send_strangers_to_login(
    world: World, name: str, ta_status: int
) -> None:
    assert client_for(world.tess).get(_url(world, name)).status_code == 200
    response = Client().get(_url(world, name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(("name", "users", "data"), POSTS)
@pytest.mark.parametrize("who", ["alice", "charlie", "tara"])
def test_roster_changes_are_404_to_all_but_an_instructor(
    world: World, name: str, users: tuple[str, ...], data: dict[str, str], who: str
) -> None:
    client = client_for(persona(world, who))
    before = set(Enrolment.objects.values_list("user_id", "cohort_id", "role"))
    response = client.post(_url(world, name, users), data)
    assert response.status_code == 404
    assert set(Enrolment.objects.values_list("user_id", "cohort_id", "role")) == before
    assert not AuditEntry.objects.exists()
    assert mail.outbox == []


@pytest.mark.parametrize(("name", "users", "data"), POSTS)
def test_roster_changes_send_anonymous_to_login(
    world: World, name: str, users: tuple[str, ...], data: dict[str, str]
) -> None:
    response = Client().post(_url(world, name, users), data)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_roster_changes_need_a_csrf_token(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.tess)
    response = client.post(_url(world, "roster_remove", ("alice",)))
    assert response.status_code == 403
    assert Enrolment.objects.filter(user=world.alice, cohort=world.autumn).exists()


def test_remove_is_post_only(world: World) -> None:
    response = client_for(world.tess).get(_url(world, "roster_remove", ("alice",)))
    assert response.status_code == 405


# --- what the page shows ----------


def test_roster_lists_students_and_staff(world: World) -> None:
    tara = make_ta(world)
    page = client_for(world.tess).get(roster_url(world))
    students = [e.user for e in page.context["students"]]
    staff = {e.user: e.role for e in page.context["staff"]}
    assert students == [world.alice]
    assert staff == {world.tess: Role.INSTRUCTOR, tara: Role.TA}
    html = page.content.decode()
    assert "alice@example.org" in html
    assert reverse("student_work", args=[world.autumn.pk, world.alice.pk]) in html
    assert 'data-testid="add-student"' in html
    assert "bob" not in html  # spring's student


def test_a_ta_sees_the_roster_without_the_forms(world: World) -> None:
    page = client_for(make_ta(world)).get(roster_url(world)).content.decode()
    assert 'data-testid="student-alice"' in page
    assert 'data-testid="add-student"' not in page
    assert reverse("roster_remove", args=[world.autumn.pk, world.alice.pk]) not in page


# --- adding a student ----------


def test_adding_a_new_address_creates_the_account_and_mails_a_working_link(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.tess).post(
            roster_url(world, "roster_add"), {"identifier": "Dana.Smith@Example.org"}
        )
    assert response.status_code == 302
    dana = User.objects.get(email="Dana.Smith@example.org")  # the domain is normalised
    assert dana.username == "Dana.Smith"
    assert not dana.has_usable_password()
    assert Enrolment.objects.get(user=dana, cohort=world.autumn).role == Role.STUDENT
    assert [m.to for m in mail.outbox] == [["Dana.Smith@example.org"]]
    assert "Linux Kernel Internals" in mail.outbox[0].subject
    entry = AuditEntry.objects.get(cohort=world.autumn)
    assert (entry.action, entry.actor) == ("roster.add", world.tess)

    set_password_from_mail(mail.outbox[0], "a-new-long-password-42")
    dana.refresh_from_db()
    assert dana.check_password("a-new-long-password-42")
    assert Client().login(
        request=HttpRequest(), username="Dana.Smith", password="a-new-long-password-42"
    )


def test_adding_an_existing_account_by_username_enrols_it_and_sends_a_note(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        client_for(world.tess).post(roster_url(world, "roster_add"), {"identifier": "BOB"})
    assert Enrolment.objects.get(user=world.bob, cohort=world.autumn).role == Role.STUDENT
    assert User.objects.count() == 4
    assert [m.to for m in mail.outbox] == [["bob@example.org"]]
    assert "/accounts/password/reset/" not in mail.outbox[0].body


def test_adding_an_existing_address_in_another_case_links_the_account(world: World) -> None:
    client_for(world.tess).post(roster_url(world, "roster_add"), {"identifier": "BOB@EXAMPLE.ORG"})
    assert Enrolment.objects.filter(user=world.bob, cohort=world.autumn).exists()
    assert User.objects.count() == 4


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("nobody", "No account has the username"),
        ("alice", "already a student here"),
        ("tess", "remove them from the staff first"),
        ("not-an@address", "not a valid e-mail address"),
    ],
)
def test_adding_is_refused_with_a_reason(world: World, identifier: str, message: str) -> None:
    response = client_for(world.tess).post(
        roster_url(world, "roster_add"), {"identifier": identifier}, follow=True
    )
    assert message in response.content.decode()
    assert not AuditEntry.objects.exists()
    assert User.objects.count() == 4


# --- removing and re-adding ------------------------------------------------------------------


def make_attempt(world: World) -> Attempt:
    version = exercise_version_for(world.hello.exercise)
    return Attempt.objects.create(
        student=world.alice,
        assignment=world.hello,
        exercise=world.hello.exercise,
        version=version,
        kind=AttemptKind.SUBMIT,
        max_score=10,
    )


def test_removing_a_student_keeps_their_work_and_readding_shows_it(world: World) -> None:
    attempt = make_attempt(world)
    tess = client_for(world.tess)
    tess.post(roster_url(world, "roster_remove", world.alice.pk))
    assert not Enrolment.objects.filter(user=world.alice, cohort=world.autumn).exists()
    assert Attempt.objects.filter(pk=attempt.pk, assignment=world.hello).exists()
    assert "Hello, kernel module" not in client_for(world.alice).get("/").content.decode()
    entry = AuditEntry.objects.get()
    assert entry.action == "roster.remove"
    assert "alice" in entry.summary

    tess.post(roster_url(world, "roster_add"), {"identifier": "alice@example.org"})
    page = tess.get(roster_url(world))
    [row] = page.context["students"]
    assert (row.user, row.attempt_count) == (world.alice, 1)
    assert "1 attempt" in page.content.decode()
    assert "Hello, kernel module" in client_for(world.alice).get("/").content.decode()


def test_removing_someone_who_is_not_a_student_changes_nothing(world: World) -> None:
    response = client_for(world.tess).post(
        roster_url(world, "roster_remove", world.tess.pk), follow=True
    )
    assert "not a student of this cohort" in response.content.decode()
    assert Enrolment.objects.filter(user=world.tess, role=Role.INSTRUCTOR).exists()


def test_resending_the_link_to_an_invited_student(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    tess = client_for(world.tess)
    tess.post(roster_url(world, "roster_add"), {"identifier": "eve@example.org"})
    eve = User.objects.get(username="eve")
    with django_capture_on_commit_callbacks(execute=True):
        tess.post(roster_url(world, "roster_invite", eve.pk))
    assert [m.to for m in mail.outbox] == [["eve@example.org"]]
    set_password_from_mail(mail.outbox[0], "eves-long-password-1")
    # Alice has a password: she uses "Forgot password" instead.
    response = tess.post(roster_url(world, "roster_invite", world.alice.pk), follow=True)
    assert "already has a password" in response.content.decode()


# --- staff ----------


def test_adding_a_ta_lets_them_see_but_not_change(world: World) -> None:
    client_for(world.tess).post(
        roster_url(world, "roster_staff_add"), {"identifier": "charlie", "role": "ta"}
    )
    assert Enrolment.objects.get(user=world.charlie, cohort=world.autumn).role == Role.TA
    charlie = client_for(world.charlie)
    assert charlie.get(roster_url(world)).status_code == 200
    assert charlie.post(roster_url(world, "roster_remove", world.alice.pk)).status_code == 404
    assert AuditEntry.objects.get().action == "staff.add"


def test_the_last_instructor_cannot_be_removed_or_demoted(world: World) -> None:
    tess = client_for(world.tess)
    response = tess.post(roster_url(world, "roster_staff_remove", world.tess.pk), follow=True)
    assert "cannot remove the last one" in response.content.decode()
    response = tess.post(
        roster_url(world, "roster_staff_add"), {"identifier": "tess", "role": "ta"}, follow=True
    )
    assert "needs an instructor" in response.content.decode()
    assert Enrolment.objects.get(user=world.tess, cohort=world.autumn).role == Role.INSTRUCTOR


def test_a_co_instructor_can_take_over(world: World) -> None:
    tess = client_for(world.tess)
    tess.post(
        roster_url(world, "roster_staff_add"), {"identifier": "charlie", "role": "instructor"}
    )
    response = tess.post(roster_url(world, "roster_staff_remove", world.tess.pk))
    assert response.status_code == 302
    assert not Enrolment.objects.filter(user=world.tess, cohort=world.autumn).exists()
    assert tess.get(roster_url(world)).status_code == 404
    assert client_for(world.charlie).get(roster_url(world)).status_code == 200


def test_a_student_is_not_made_staff_by_accident(world: World) -> None:
    response = client_for(world.tess).post(
        roster_url(world, "roster_staff_add"), {"identifier": "alice", "role": "ta"}, follow=True
    )
    assert "remove them as a student first" in response.content.decode()
    assert Enrolment.objects.get(user=world.alice, cohort=world.autumn).role == Role.STUDENT


# --- archived ----------


@pytest.mark.parametrize("archived", ["cohort", "course"])
def test_an_archived_cohorts_roster_is_read_only(world: World, archived: str) -> None:
    target = world.autumn if archived == "cohort" else world.kernel_course
    target.archived_at = timezone.now()
    target.save()
    tess = client_for(world.tess)
    page = tess.get(roster_url(world)).content.decode()
    assert 'data-testid="archived-note"' in page
    assert 'data-testid="add-student"' not in page
    response = tess.post(roster_url(world, "roster_remove", world.alice.pk), follow=True)
    assert "is archived: unarchive it to change its roster" in response.content.decode()
    assert Enrolment.objects.filter(user=world.alice, cohort=world.autumn).exists()


def test_staff_changes_are_audited_with_the_actor(world: World) -> None:
    make_user("olga")
    tess = client_for(world.tess)
    tess.post(roster_url(world, "roster_staff_add"), {"identifier": "olga", "role": "instructor"})
    olga = User.objects.get(username="olga")
    tess.post(roster_url(world, "roster_staff_remove", olga.pk))
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "actor__username"))
    assert actions == [("staff.add", "tess"), ("staff.remove", "tess")]
