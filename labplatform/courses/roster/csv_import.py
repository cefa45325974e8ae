"""Enrol a cohort's students from a CSV file, such as a university's class-list export.

Columns (the first row names them; case, spaces and punctuation in the names
do not matter; other columns are ignored):

- ``email`` (required) — also: E-mail, Email address, Mail, Primary email, Student email.
- ``username`` (optional) — also: User name, Login, Login ID, SIS Login ID, NetID.
  Used for a new account; without it the address's local part is used
  (alice.b, alice.b2, ...). An existing account keeps its own username.
- ``first name`` (optional) — also: Given name, Forename, First.
- ``last name`` (optional) — also: Surname, Family name, Last.
- ``student id`` (optional) — also: Student number, SIS User ID, SIS ID, ID number,
  Matriculation number. Kept with the enrolment (a later file can add it)
  and exported in the gradebook's "Student ID" column, which LMS imports
  match on.

The file is UTF-8 (with or without a byte-order mark, as Excel's "CSV UTF-8"
writes it), separated by commas, semicolons or tabs (detected), at most
1 MiB and 5000 rows.

A person is matched to an existing account by e-mail address, ignoring case;
otherwise a new account is created with no password and mailed a link to set
one. Everyone is enrolled as a student.

Everything is checked before anything changes: a file with any bad row
changes nothing, and each bad row is reported with its line number and the
reason (no or invalid e-mail, the same e-mail twice, a username that belongs
to another account, ...). A good file is applied in one transaction, and the
mail goes out after it commits.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models.functions import Lower

from labplatform.accounts.models import User
from labplatform.courses.audit import audit_record
from labplatform.courses.models import Cohort, Enrolment, Role
from labplatform.courses.roster.invitations import roster_mail_after_commit
from labplatform.courses.roster.services import (
    account_create,
    cohort_require_open,
    username_from_email,
)

MAX_BYTES = 1024 * 1024
MAX_ROWS = 5000
NAME_MAX_LENGTH = 150

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "mail",
        "mail address",
        "primary email",
        "student email",
        "university email",
    ),
    "username": (
        "username",
        "user name",
        "login",
        "login id",
        "login name",
        "sis login id",
        "netid",
        "net id",
    ),
    "first_name": ("first name", "firstname", "given name", "given names", "forename", "first"),
    "last_name": ("last name", "lastname", "surname", "family name", "last"),
    "student_id": (
        "student id",
        "student number",
        "student no",
        "sis user id",
        "sis id",
        "id number",
        "idnumber",
        "matriculation number",
        "registration number",
    ),
}

COLUMN_TITLES = {
    "email": "e-mail",
    "username": "username",
    "first_name": "first name",
    "last_name": "last name",
    "student_id": "student id",
}


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


_FIELD_BY_KEY = {_key(alias): name for name, aliases in COLUMN_ALIASES.items() for alias in aliases}


@dataclass(frozen=True)
class RowError:
    line: int  # 0: the file as a whole
    message: str

    def __str__(self) -> str:
        return f"Line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    username: str = ""
    first_name: str = ""
    last_name: str = ""
    student_id: str = ""


@dataclass
class ImportResult:
    errors: list[RowError] = field(default_factory=list)
    created: list[User] = field(default_factory=list)
    linked: list[User] = field(default_factory=list)
    already: list[User] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summary(self) -> str:
        return (
            f"created {len(self.created)}, linked {len(self.linked)}, "
            f"already enrolled {len(self.already)}"
        )


class FileRefused(Exception):
    def __init__(self, error: RowError) -> None:
        super().__init__(str(error))
        self.error = error


def _decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise FileRefused(
            RowError(0, f"The file is {len(data) / MAX_BYTES:.1f} MiB; the limit is 1 MiB.")
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise FileRefused(
            RowError(line, "not UTF-8 text: save the file as “CSV UTF-8” and try again.")
        ) from None
    if not text.strip():
        raise FileRefused(RowError(0, "The file is empty."))
    return text


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",;\t")
    except csv.Error:
        # One column, or too little text to tell: a comma is as good as anything.
        return csv.excel


def _columns(header: list[str]) -> dict[str, int]:
    """The position of each field we know, from the header row."""
    columns: dict[str, int] = {}
    for position, title in enumerate(header):
        name = _FIELD_BY_KEY.get(_key(title))
        if name is None:
            continue
        if name in columns:
            raise FileRefused(
                RowError(
                    1,
                    f"two columns give the {COLUMN_TITLES[name]}: "
                    f"“{header[columns[name]].strip()}” and “{title.strip()}”.",
                )
            )
        columns[name] = position
    if "email" not in columns:
        found = ", ".join(f"“{title.strip()}”" for title in header if title.strip())
        raise FileRefused(
            RowError(1, f"no e-mail column (the header row has {found or 'nothing'}).")
        )
    return columns


def roster_csv_parse(*, data: bytes) -> tuple[list[Row], list[RowError]]:
    """The rows that read well, and what is wrong with the others on their own
    (the database is not consulted here). No rows: the file as a whole is bad."""
    try:
        text = _decode(data)
        reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
        columns = _columns(next(reader))
        rows: list[Row] = []
        errors: list[RowError] = []
        first_email: dict[str, int] = {}
        first_username: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) + len(errors) >= MAX_ROWS:
                raise FileRefused(RowError(0, f"The file has more than {MAX_ROWS} rows: split it."))
            values = {
                name: (cells[position].strip() if position < len(cells) else "")
                for name, position in columns.items()
            }
            problem = _row_problem(values, line, first_email, first_username)
            if problem:
                errors.append(RowError(line, problem))
            else:
                rows.append(Row(line=line, **values))
    except csv.Error as error:
        return [], [RowError(reader.line_num, f"not readable as CSV: {error}.")]
    except StopIteration:
        return [], [RowError(0, "The file is empty.")]
    except FileRefused as refused:
        return [], [refused.error]
    if not rows and not errors:
        errors.append(RowError(0, "The file has a header row but no students."))
    return rows, errors


def _row_problem(
    values: dict[str, str], line: int, first_email: dict[str, int], first_username: dict[str, int]
) -> str | None:
    email = values["email"]
    if not email:
        return "no e-mail address."
    try:
        validate_email(email)
    except ValidationError:
        return f"“{email}” is not a valid e-mail address."
    if email.lower() in first_email:
        return f"{email} is also on line {first_email[email.lower()]}."
    first_email[email.lower()] = line
    username = values.get("username", "")
    if username:
        try:
            User.username_validator(username)
        except ValidationError:
            return f"username “{username}” is not valid: use letters, digits and @ . + - _ only."
        if len(username) > NAME_MAX_LENGTH:
            return f"username “{username[:20]}…” is longer than {NAME_MAX_LENGTH} characters."
        if username.lower() in first_username:
            return f"username “{username}” is also on line {first_username[username.lower()]}."
        first_username[username.lower()] = line
    for name in ("first_name", "last_name"):
        if len(values.get(name, "")) > NAME_MAX_LENGTH:
            return f"the {COLUMN_TITLES[name]} is longer than {NAME_MAX_LENGTH} characters."
    return None


def _by_lower(field_name: str, values: Iterable[str]) -> dict[str, list[User]]:
    found: dict[str, list[User]] = {}
    users = User.objects.annotate(_lower=Lower(field_name)).filter(
        _lower__in={value.lower() for value in values}
    )
    for user in users:
        found.setdefault(getattr(user, field_name).lower(), []).append(user)
    return found


@dataclass(frozen=True)
class _Plan:
    create: list[Row]
    link: list[tuple[Row, User]]
    already: list[tuple[Row, User]]


def _plan(*, cohort: Cohort, rows: list[Row]) -> tuple[_Plan, list[RowError]]:
    """What each row will do, and the rows the database makes impossible."""
    accounts = _by_lower("email", (row.email for row in rows))
    usernames = _by_lower("username", (row.username for row in rows if row.username))
    roles = dict(Enrolment.objects.filter(cohort=cohort).values_list("user_id", "role"))
    plan = _Plan(create=[], link=[], already=[])
    errors: list[RowError] = []
    for row in rows:
        matches = accounts.get(row.email.lower(), [])
        owners = usernames.get(row.username.lower(), []) if row.username else []
        if len(matches) > 1:
            errors.append(
                RowError(
                    row.line,
                    f"several accounts use {row.email}: add that person by username "
                    "on the roster page.",
                )
            )
        elif any(owner.email.lower() != row.email.lower() for owner in owners):
            errors.append(
                RowError(
                    row.line,
                    f"username “{row.username}” is taken by an account with a different "
                    "e-mail address.",
                )
            )
        elif not matches:
            plan.create.append(row)
        elif (role := roles.get(matches[0].pk)) == Role.STUDENT:
            plan.already.append((row, matches[0]))
        elif role is not None:
            errors.append(
                RowError(
                    row.line,
                    f"{row.email} is {Role(role).label.lower()} of this cohort, not a student.",
                )
            )
        else:
            plan.link.append((row, matches[0]))
    return plan, errors


def roster_csv_import(*, cohort: Cohort, actor: User, data: bytes) -> ImportResult:
    """Check the whole file, then (only if every row is good) create, link and
    enrol in one transaction; mail the new accounts after it commits."""
    rows, errors = roster_csv_parse(data=data)
    if not rows:
        return ImportResult(errors=errors)
    with transaction.atomic():
        cohort_require_open(cohort=cohort)
        # One import at a time per cohort: the checks below stay true until commit.
        Cohort.objects.select_for_update().filter(pk=cohort.pk).first()
        plan, refused = _plan(cohort=cohort, rows=rows)
        if errors or refused:
            return ImportResult(errors=sorted(errors + refused, key=lambda error: error.line))
        taken: set[str] = {row.username.lower() for row in plan.create if row.username}
        created: list[User] = []
        for row in plan.create:
            username = row.username or username_from_email(email=row.email, taken=taken)
            taken.add(username.lower())
            created.append(
                account_create(
                    email=row.email,
                    username=username,
                    first_name=row.first_name,
                    last_name=row.last_name,
                )
            )
        linked = [user for _, user in plan.link]
        enrolled = [*zip(plan.create, created, strict=True), *plan.link]
        Enrolment.objects.bulk_create(
            Enrolment(user=user, cohort=cohort, role=Role.STUDENT, student_number=row.student_id)
            for row, user in enrolled
        )
        # A later export may bring the student ids an earlier one lacked.
        for row, user in plan.already:
            if row.student_id:
                Enrolment.objects.filter(user=user, cohort=cohort).update(
                    student_number=row.student_id
                )
        already = [user for _, user in plan.already]
        result = ImportResult(created=created, linked=linked, already=already)
        student_ids = {user.username: row.student_id for row, user in enrolled if row.student_id}
        audit_record(
            cohort=cohort,
            actor=actor,
            action="roster.import",
            summary=f"Imported {len(rows)} student(s) from a CSV file: {result.summary}",
            detail={
                "created": [user.username for user in created],
                "linked": [user.username for user in linked],
                "already_enrolled": [user.username for user in already],
                "student_ids": student_ids,
            },
        )
        roster_mail_after_commit(cohort=cohort, invited=created, added=linked)
    return result
