"""CSV import: a file with any bad row changes nothing and lists every bad row;
a good one creates and links accounts, enrols them and mails the new ones."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labplatform.accounts.models import User
from labplatform.courses.models import AuditEntry, Enrolment, Role
from labplatform.courses.roster.csv_import import MAX_ROWS, roster_csv_parse
from tests.conftest import World, client_for
from tests.support.roster import make_ta, set_password_from_mail


def import_url(world: World) -> str:
    return reverse("roster_import", args=[world.autumn.pk])


def upload(client: Client, world: World, text: str | bytes, **extra: Any) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        import_url(world), {"file": SimpleUploadedFile("class.csv", data, "text/csv")}, **extra
    )


def snapshot() -> tuple[set[tuple[int, int, str]], int]:
    return set(Enrolment.objects.values_list("user_id", "cohort_id", "role")), User.objects.count()


def error_lines(response: Any) -> list[tuple[int, str]]:
    return [(error.line, error.message) for error in response.context["errors"]]


# --- a file with bad rows ----------


MIXED = """email,first name,last name,username
ada@example.edu,Ada,Lovelace,
,No,Address,
not-an-address,Bad,Address,
alan@example.edu,Alan,Turing,
ADA@example.edu,Ada,Again,
grace@example.edu,Grace,Hopper,bob
tess@example.org,Tess,Teacher,
"""


def test_a_file_with_bad_rows_changes_nothing_and_reports_each_line(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    before = snapshot()
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_for(world.tess), world, MIXED)
    assert response.status_code == 400
    assert error_lines(response) == [
        (3, "no e-mail address."),
        (4, "“not-an-address” is not a valid e-mail address."),
        (6, "ADA@example.edu is also on line 2."),
        (7, "username “bob” is taken by an account with a different e-mail address."),
        (8, "tess@example.org is instructor of this cohort, not a student."),
    ]
    assert "Nothing was imported" in response.content.decode()
    assert snapshot() == before
    assert not AuditEntry.objects.exists()
    assert mail.outbox == []


def test_rows_the_database_refuses_are_all_reported(world: World) -> None:
    before = snapshot()
    text = "\n".join(
        [
            "email,username",
            "ada@example.edu,",
            "grace@example.edu,bob",  # bob's username, another address
            "tess@example.org,",  # the instructor
            "alan@example.edu,",
        ]
    )
    response = upload(client_for(world.tess), world, text)
    assert error_lines(response) == [
        (3, "username “bob” is taken by an account with a different e-mail address."),
        (4, "tess@example.org is instructor of this cohort, not a student."),
    ]
    assert snapshot() == before


# --- a good file ----------


GOOD = """Email,First Name,Last Name,Username
ada@example.edu,Ada,Lovelace,ada
Alan@Example.edu,Alan,Turing,
BOB@example.org,Bob,Baker,
alice@example.org,Alice,Archer,
"""


def test_a_good_file_creates_links_and_enrols_and_mails_the_new_accounts(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client_for(world.tess), world, GOOD, follow=True)
    assert "created 2, linked 1, already enrolled 1" in response.content.decode()
    ada = User.objects.get(username="ada")
    alan = User.objects.get(email__iexact="alan@example.edu")
    assert (ada.first_name, ada.last_name, alan.username) == ("Ada", "Lovelace", "Alan")
    students = set(
        Enrolment.objects.filter(cohort=world.autumn, role=Role.STUDENT).values_list(
            "user__username", flat=True
        )
    )
    assert students == {"alice", "bob", "ada", "Alan"}
    # New accounts get a set-password link; bob (existing) gets a note.
    by_recipient = {message.to[0]: message for message in mail.outbox}
    assert set(by_recipient) == {"ada@example.edu", "Alan@example.edu", "bob@example.org"}
    assert "/accounts/password/reset/" not in by_recipient["bob@example.org"].body
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor) == ("roster.import", world.tess)
    assert entry.detail["created"] == ["ada", "Alan"]
    assert entry.detail["linked"] == ["bob"]
    assert entry.detail["already_enrolled"] == ["alice"]

    set_password_from_mail(by_recipient["ada@example.edu"], "adas-engine-1843")
    assert Client().login(request=HttpRequest(), username="ada", password="adas-engine-1843")


def test_nothing_is_mailed_before_the_import_commits(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        upload(client_for(world.tess), world, GOOD)
    assert mail.outbox == []
    assert len(callbacks) == 1


def test_a_university_export_with_extra_columns_bom_and_semicolons(world: World) -> None:
    export = (
        "\ufeffSIS User ID;Surname;Given name;E-mail address;Section;Login\r\n"
        '20250001;Lovelace;Ada;ada@example.edu;"A; morning";\r\n'
        "20250002;Hopper;Grace;grace@example.edu;B;ghopper\r\n"
    ).encode()
    response = upload(client_for(world.tess), world, export, follow=True)
    assert "created 2, linked 0, already enrolled 0" in response.content.decode()
    grace = User.objects.get(username="ghopper")
    assert (grace.first_name, grace.last_name, grace.email) == (
        "Grace",
        "Hopper",
        "grace@example.edu",
    )
    assert User.objects.get(email="ada@example.edu").username == "ada"
    assert AuditEntry.objects.get().detail["student_ids"] == {
        "ada": "20250001",
        "ghopper": "20250002",
    }


def test_usernames_made_from_addresses_do_not_collide(world: World) -> None:
    text = "email\nalice@elsewhere.edu\nalice@another.edu\n"
    upload(client_for(world.tess), world, text)
    assert set(User.objects.filter(email__endswith=".edu").values_list("username", flat=True)) == {
        "alice2",
        "alice3",
    }


# --- the file as a whole ----------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty."),
        (b"name,phone\nAda,123\n", "no e-mail column (the header row has “name”, “phone”)."),
        (b"email,E-mail address\na@b.org,a@b.org\n", "two columns give the e-mail"),
        (b"email\n", "no students"),
        (b"email\nada@example.edu\n\xff\xfe\n", "not UTF-8 text"),
        (
            ("email\n" + "".join(f"s{i}@example.edu\n" for i in range(MAX_ROWS + 1))).encode(),
            f"more than {MAX_ROWS} rows",
        ),
    ],
)
def test_a_file_that_is_not_a_class_list_is_refused_clearly(data: bytes, message: str) -> None:
    rows, errors = roster_csv_parse(data=data)
    assert rows == []
    assert len(errors) == 1
    assert message in str(errors[0])


def test_a_file_over_the_size_limit_is_refused(world: World) -> None:
    before = snapshot()
    big = "email\n" + "x" * (1024 * 1024)
    response = upload(client_for(world.tess), world, big)
    assert "the limit is 1 MiB" in response.content.decode()
    assert snapshot() == before


def test_the_page_documents_the_columns(world: World) -> None:
    page = client_for(world.tess).get(import_url(world)).content.decode()
    for text in ("email", "Given name", "Surname", "SIS User ID", "Student number", "1 MiB"):
        assert text.lower() in page.lower()


# --- who may import ----------


@pytest.mark.parametrize("who", ["alice", "charlie", "tara"])
def test_only_an_instructor_may_import(world: World, who: str) -> None:
    client = client_for(make_ta(world) if who == "tara" else getattr(world, who))
    before = snapshot()
    assert upload(client, world, GOOD).status_code == 404
    assert snapshot() == before


def test_anonymous_is_sent_to_login(world: World) -> None:
    response = upload(Client(), world, GOOD)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not User.objects.filter(username="ada").exists()


def test_an_archived_cohort_refuses_an_import(world: World) -> None:
    world.autumn.archived_at = timezone.now()
    world.autumn.save()
    before = snapshot()
    response = upload(client_for(world.tess), world, GOOD, follow=True)
    assert "is archived" in response.content.decode()
    assert snapshot() == before


def test_the_student_ids_reach_the_gradebook_and_a_later_file_adds_missing_ones(
    world: World,
) -> None:
    tess = client_for(world.tess)
    upload(tess, world, "Email;SIS User ID\nada@example.edu;20250001\ngrace@example.edu;\n")
    # The same class list a week later, now with Grace's id (and alice, linked).
    later = "Email,SIS User ID\nada@example.edu,20250001\ngrace@example.edu,20250002\n"
    upload(tess, world, later + "alice@example.org,20249999\n")
    numbers = dict(
        Enrolment.objects.filter(cohort=world.autumn).values_list("user__email", "student_number")
    )
    assert numbers["ada@example.edu"] == "20250001"
    assert numbers["grace@example.edu"] == "20250002"
    assert numbers["alice@example.org"] == "20249999"
    rows = tess.get(reverse("gradebook_csv", args=[world.autumn.pk])).content.decode().splitlines()
    assert rows[0].split(",")[4] == "Student ID"
    by_email = {row.split(",")[1]: row.split(",")[4] for row in rows[1:]}
    assert by_email == {
        "ada@example.edu": "20250001",
        "grace@example.edu": "20250002",
        "alice@example.org": "20249999",
    }
