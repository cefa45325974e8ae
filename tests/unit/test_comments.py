"""Staff comments on an attempt: instructors and TAs of its cohort write them
(a POST, audited), its student reads them on the attempt's page, everyone
else gets 404."""

from __future__ import annotations

import pytest
from django.test import Client

from exercises.models import Attempt, AttemptComment, AttemptKind, AttemptStatus
from labplatform.accounts.models import User
from labplatform.courses.models import AuditEntry, Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, client_for, exercise_version_for, make_user


@pytest.fixture
def ta(world: World) -> User:
    tara = make_user("tara", first_name="Tara")
    enrolment_set(user=tara, cohort=world.autumn, role=Role.TA)
    return tara


@pytest.fixture
def attempt(world: World) -> Attempt:
    """Alice's graded Submit of hello-module."""
    version = exercise_version_for(world.hello.exercise)
    return Attempt.objects.create(
        student=world.alice,
        assignment=world.hello,
        exercise=world.hello.exercise,
        version=version,
        kind=AttemptKind.SUBMIT,
        status=AttemptStatus.GRADED,
        score=7,
        max_score=10,
    )


def comment_url(attempt: Attempt) -> str:
    return f"/teach/attempts/{attempt.pk}/comment"


def page_url(attempt: Attempt) -> str:
    return f"/exercises/attempts/{attempt.pk}/"


@pytest.mark.parametrize("persona", ["tess", "ta"])
def test_the_cohorts_staff_comment_and_it_is_audited(
    world: World, ta: User, attempt: Attempt, persona: str
) -> None:
    author = ta if persona == "ta" else world.tess
    response = client_for(author).post(comment_url(attempt), {"body": "  Nice use of printk.  "})
    assert response.status_code == 302
    assert response["Location"] == f"{page_url(attempt)}#comments-{attempt.pk}"
    comment = AttemptComment.objects.get()
    assert (comment.attempt, comment.author, comment.body) == (
        attempt,
        author,
        "Nice use of printk.",
    )
    entry = AuditEntry.objects.get(cohort=world.autumn)
    assert (entry.action, entry.actor) == ("attempt.comment", author)
    assert entry.detail == {"attempt": attempt.pk, "comment": comment.pk, "student": "alice"}


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie"])
def test_the_student_and_strangers_cannot_comment(
    world: World, attempt: Attempt, persona: str
) -> None:
    response = client_for(getattr(world, persona)).post(comment_url(attempt), {"body": "hi"})
    assert response.status_code == 404
    assert not AttemptComment.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_missing_attempt_is_404(world: World) -> None:
    assert (
        client_for(world.tess).post("/teach/attempts/999/comment", {"body": "x"}).status_code == 404
    )


def test_anonymous_is_sent_to_log_in(world: World, attempt: Attempt) -> None:
    response = Client().post(comment_url(attempt), {"body": "hi"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not AttemptComment.objects.exists()


def test_commenting_needs_post_and_csrf(world: World, attempt: Attempt) -> None:
    assert client_for(world.tess).get(comment_url(attempt)).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.tess)
    assert strict.post(comment_url(attempt), {"body": "hi"}).status_code == 403
    assert not AttemptComment.objects.exists()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("", "Write something before sending the comment."),
        ("   \n ", "Write something before sending the comment."),
        ("x" * 5001, "A comment is at most 5000 characters; this one has 5001."),
    ],
)
def test_an_empty_or_too_long_comment_is_refused_and_nothing_is_saved(
    world: World, attempt: Attempt, body: str, error: str
) -> None:
    response = client_for(world.tess).post(comment_url(attempt), {"body": body}, follow=True)
    assert error in response.content.decode()
    assert not AttemptComment.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_comment_of_exactly_5000_characters_is_kept(world: World, attempt: Attempt) -> None:
    client_for(world.tess).post(comment_url(attempt), {"body": "x" * 5000})
    assert len(AttemptComment.objects.get().body) == 5000


def test_the_form_returns_to_the_page_it_was_on_but_never_off_site(
    world: World, attempt: Attempt
) -> None:
    tess = client_for(world.tess)
    board = f"/teach/cohorts/{world.autumn.pk}/students/{world.alice.pk}/"
    assert tess.post(comment_url(attempt), {"body": "a", "next": board})["Location"] == board
    away = tess.post(comment_url(attempt), {"body": "b", "next": "https://evil.example/"})
    assert away["Location"] == f"{page_url(attempt)}#comments-{attempt.pk}"


def test_the_student_reads_the_comments_on_their_attempt_without_a_form(
    world: World, ta: User, attempt: Attempt
) -> None:
    AttemptComment.objects.create(attempt=attempt, author=ta, body="Check the return value.")
    html = client_for(world.alice).get(page_url(attempt)).content.decode()
    assert "Check the return value." in html
    assert "Tara" in html
    assert comment_url(attempt) not in html


def test_the_student_sees_how_many_comments_an_attempt_has_on_the_exercise_page(
    world: World, attempt: Attempt
) -> None:
    AttemptComment.objects.create(attempt=attempt, author=world.tess, body="Good.")
    html = client_for(world.alice).get("/exercises/hello-module/").content.decode()
    assert "1 comment</a>" in html


def test_the_staff_get_the_form_on_the_attempt_page(
    world: World, ta: User, attempt: Attempt
) -> None:
    assert comment_url(attempt) in client_for(ta).get(page_url(attempt)).content.decode()


def test_an_attempt_without_comments_shows_no_comment_panel_to_its_student(
    world: World, attempt: Attempt
) -> None:
    html = client_for(world.alice).get(page_url(attempt)).content.decode()
    assert 'data-testid="attempt-comments"' not in html
