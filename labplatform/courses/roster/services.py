"""Writes of courses, cohorts and rosters, each recorded in the cohort's audit log.

Removing someone from a cohort deletes their Enrolment only: their attempts,
submitted files and VM history stay, so adding them back shows their work
again. Every refusal is a RosterRefused with the sentence the instructor sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.text import slugify

from labplatform.accounts.models import User
from labplatform.courses.audit import audit_record
from labplatform.courses.models import Cohort, Course, Enrolment, Role
from labplatform.courses.roster.invitations import roster_mail_after_commit
from labplatform.courses.services import enrolment_set


class RosterRefused(Exception):
    """A change the platform will not make; `message` says why, to a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- accounts -------------------------------------------------------------------


def user_list_by_email(*, email: str) -> QuerySet[User]:
    return User.objects.filter(email__iexact=email.strip())


def username_from_email(*, email: str, taken: set[str] | None = None) -> str:
    """A free username made of the address's local part (alice.b, alice.b2, ...),
    avoiding the accounts in the database and the names in `taken` (lower case)."""
    base = re.sub(r"[^\w.@+-]", "", email.split("@", 1)[0])[:140] or "student"
    taken = taken or set()
    candidate, n = base, 1
    while candidate.lower() in taken or User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def account_create(*, email: str, username: str, first_name: str = "", last_name: str = "") -> User:
    """A new account with no password yet: its owner sets one from the mailed link."""
    user = User(email=email, username=username, first_name=first_name, last_name=last_name)
    user.set_unusable_password()
    user.full_clean()
    user.save()
    return user


def user_find_or_invite(*, identifier: str) -> tuple[User, bool]:
    """The account named by an e-mail address or a username; an address that
    matches no account makes a new one. Returns (user, created)."""
    identifier = identifier.strip()
    if "@" in identifier:
        try:
            validate_email(identifier)
        except ValidationError:
            raise RosterRefused(
                "bad_email", f"{identifier!r} is not a valid e-mail address."
            ) from None
        matches = list(user_list_by_email(email=identifier)[:2])
        if len(matches) > 1:
            raise RosterRefused(
                "ambiguous_email",
                f"Several accounts use {identifier}: add the one you mean by its username.",
            )
        if matches:
            return matches[0], False
        return account_create(
            email=identifier, username=username_from_email(email=identifier)
        ), True
    user = User.objects.filter(username__iexact=identifier).first()
    if user is None:
        raise RosterRefused(
            "no_such_user",
            f"No account has the username {identifier!r}. "
            "Add the person by e-mail address to create one.",
        )
    return user, False


# --- the roster -------------------------------------------------------------------


def cohort_require_open(*, cohort: Cohort) -> None:
    """Archived cohorts (or cohorts of an archived course) are read-only."""
    if cohort.archived_at is not None or cohort.course.archived_at is not None:
        raise RosterRefused(
            "archived",
            f"{cohort} is archived: unarchive it to change its roster.",
        )


def _describe(user: User) -> str:
    return f"{user.get_full_name() or user.username} <{user.email}>" if user.email else str(user)


@transaction.atomic
def roster_student_add(*, cohort: Cohort, actor: User, identifier: str) -> tuple[Enrolment, bool]:
    """Enrol one student by e-mail or username; returns (enrolment, whether
    a new account was made and mailed a set-password link)."""
    cohort_require_open(cohort=cohort)
    user, created = user_find_or_invite(identifier=identifier)
    current = Enrolment.objects.filter(user=user, cohort=cohort).first()
    if current is not None:
        if current.role == Role.STUDENT:
            raise RosterRefused("already_enrolled", f"{_describe(user)} is already a student here.")
        raise RosterRefused(
            "is_staff",
            f"{_describe(user)} is {current.get_role_display().lower()} of this cohort: "
            "remove them from the staff first.",
        )
    enrolment = enrolment_set(user=user, cohort=cohort, role=Role.STUDENT)
    audit_record(
        cohort=cohort,
        actor=actor,
        action="roster.add",
        summary=f"Added student {_describe(user)}"
        + (" (new account, set-password link mailed)" if created else ""),
        detail={"user_id": user.pk, "username": user.username, "created": created},
    )
    roster_mail_after_commit(
        cohort=cohort, invited=[user] if created else [], added=[] if created else [user]
    )
    return enrolment, created


@transaction.atomic
def roster_student_remove(*, cohort: Cohort, actor: User, student_id: int) -> User:
    """Take a student off the cohort. Only the Enrolment goes: their attempts,
    files and VM history stay and come back if they are added again."""
    cohort_require_open(cohort=cohort)
    enrolment = (
        Enrolment.objects.select_related("user")
        .filter(cohort=cohort, user_id=student_id, role=Role.STUDENT)
        .first()
    )
    if enrolment is None:
        raise RosterRefused("not_enrolled", "That person is not a student of this cohort.")
    user = enrolment.user
    enrolment.delete()
    audit_record(
        cohort=cohort,
        actor=actor,
        action="roster.remove",
        summary=f"Removed student {_describe(user)} (their work is kept)",
        detail={"user_id": user.pk, "username": user.username},
    )
    return user


def roster_invite_resend(*, cohort: Cohort, actor: User, student_id: int) -> User:
    """Mail a fresh set-password link to a student who has not set a password yet."""
    cohort_require_open(cohort=cohort)
    enrolment = (
        Enrolment.objects.select_related("user")
        .filter(cohort=cohort, user_id=student_id, role=Role.STUDENT)
        .first()
    )
    if enrolment is None:
        raise RosterRefused("not_enrolled", "That person is not a student of this cohort.")
    user = enrolment.user
    if user.has_usable_password():
        raise RosterRefused(
            "has_password",
            f"{_describe(user)} already has a password; they can use “Forgot password”.",
        )
    with transaction.atomic():
        audit_record(
            cohort=cohort,
            actor=actor,
            action="roster.invite",
            summary=f"Mailed a new set-password link to {_describe(user)}",
            detail={"user_id": user.pk},
        )
        roster_mail_after_commit(cohort=cohort, invited=[user])
    return user


def _instructor_count(cohort: Cohort) -> int:
    return Enrolment.objects.filter(cohort=cohort, role=Role.INSTRUCTOR).count()


@transaction.atomic
def roster_staff_add(*, cohort: Cohort, actor: User, identifier: str, role: Role) -> Enrolment:
    """Make someone an instructor or TA of the cohort (or change a staff
    member's role). A student of the cohort must be removed first."""
    if role not in (Role.INSTRUCTOR, Role.TA):
        raise RosterRefused("bad_role", "Staff are instructors or teaching assistants.")
    cohort_require_open(cohort=cohort)
    # Serialise staff changes of one cohort, so that two demotions at once
    # cannot both see "another instructor remains".
    Cohort.objects.select_for_update().filter(pk=cohort.pk).first()
    user, created = user_find_or_invite(identifier=identifier)
    current = Enrolment.objects.filter(user=user, cohort=cohort).first()
    if current is not None and current.role == Role.STUDENT:
        raise RosterRefused(
            "is_student",
            f"{_describe(user)} is a student of this cohort: remove them as a student first.",
        )
    if current is not None and current.role == role:
        raise RosterRefused(
            "already_staff", f"{_describe(user)} is already {role.label.lower()} here."
        )
    if current is not None and current.role == Role.INSTRUCTOR and _instructor_count(cohort) <= 1:
        raise RosterRefused(
            "last_instructor", "A cohort needs an instructor: add another one first."
        )
    enrolment = enrolment_set(user=user, cohort=cohort, role=role)
    audit_record(
        cohort=cohort,
        actor=actor,
        action="staff.add" if current is None else "staff.role",
        summary=f"{'Added' if current is None else 'Made'} {_describe(user)} {role.label.lower()}",
        detail={"user_id": user.pk, "role": str(role), "created": created},
    )
    roster_mail_after_commit(
        cohort=cohort, invited=[user] if created else [], added=[] if created else [user]
    )
    return enrolment


@transaction.atomic
def roster_staff_remove(*, cohort: Cohort, actor: User, user_id: int) -> User:
    cohort_require_open(cohort=cohort)
    Cohort.objects.select_for_update().filter(pk=cohort.pk).first()
    enrolment = (
        Enrolment.objects.select_related("user")
        .filter(cohort=cohort, user_id=user_id, role__in=(Role.INSTRUCTOR, Role.TA))
        .first()
    )
    if enrolment is None:
        raise RosterRefused("not_staff", "That person is not on this cohort's staff.")
    if enrolment.role == Role.INSTRUCTOR and _instructor_count(cohort) <= 1:
        raise RosterRefused(
            "last_instructor", "A cohort needs an instructor: you cannot remove the last one."
        )
    user = enrolment.user
    role_label = enrolment.get_role_display().lower()
    enrolment.delete()
    audit_record(
        cohort=cohort,
        actor=actor,
        action="staff.remove",
        summary=f"Removed {role_label} {_describe(user)}",
        detail={"user_id": user.pk, "role": enrolment.role},
    )
    return user


# --- courses and cohorts --------------------------------------------------------------


def _changes(instance: Course | Cohort, values: Mapping[str, object]) -> dict[str, list[str]]:
    """Set `values` on the instance; returns {field: [old, new]} of what changed."""
    changed: dict[str, list[str]] = {}
    for name, value in values.items():
        old = getattr(instance, name)
        if old != value:
            changed[name] = [str(old), str(value)]
            setattr(instance, name, value)
    return changed


def _audit(
    *, target: Course | Cohort, actor: User, action: str, summary: str, detail: dict
) -> None:
    """A cohort's change goes into its log; a course's into the log of each of its cohorts."""
    cohorts = target.cohorts.all() if isinstance(target, Course) else [target]
    for cohort in cohorts:
        audit_record(cohort=cohort, actor=actor, action=action, summary=summary, detail=detail)


def _update(
    *, target: Course | Cohort, actor: User, values: Mapping[str, object], summary: str
) -> None:
    """Set the values, save if anything changed, and log `summary: <fields>`."""
    changed = _changes(target, values)
    if changed:
        target.full_clean()
        target.save()
        kind = target._meta.model_name
        _audit(
            target=target,
            actor=actor,
            action=f"{kind}.edit",
            summary=f"{summary}: {', '.join(changed)}",
            detail={"changed": changed},
        )


def _archive_set(*, target: Course | Cohort, actor: User, archived: bool, label: str) -> None:
    """Archive or unarchive; a no-op (and no log entry) when nothing changes."""
    if (target.archived_at is not None) == archived:
        return
    target.archived_at = timezone.now() if archived else None
    target.save(update_fields=["archived_at"])
    kind = target._meta.model_name
    _audit(
        target=target,
        actor=actor,
        action=f"{kind}.archive" if archived else f"{kind}.unarchive",
        summary=f"{'Archived' if archived else 'Unarchived'} {label}",
        detail={kind: target.slug},
    )


def user_may_create_course(*, user: User) -> bool:
    return user.is_active and (user.is_staff or user.has_perm("courses.add_course"))


@transaction.atomic
def course_create(
    *,
    actor: User,
    title: str,
    slug: str,
    description: str = "",
    cohort_name: str,
    time_zone: str,
) -> Cohort:
    """A course with its first cohort, taught by the actor. Returns the cohort."""
    if not user_may_create_course(user=actor):
        raise RosterRefused("forbidden", "You may not create courses.")
    course = Course(title=title, slug=slug, description=description)
    course.full_clean()
    course.save()
    cohort = Cohort(
        course=course,
        name=cohort_name,
        slug=slugify(cohort_name)[:64] or "main",
        time_zone=time_zone,
    )
    cohort.full_clean()
    cohort.save()
    enrolment_set(user=actor, cohort=cohort, role=Role.INSTRUCTOR)
    audit_record(
        cohort=cohort,
        actor=actor,
        action="course.create",
        summary=f"Created course {course.title} with cohort {cohort.name}",
        detail={"course": course.slug, "cohort": cohort.slug},
    )
    return cohort


@transaction.atomic
def course_update(*, course: Course, actor: User, values: Mapping[str, object]) -> Course:
    _update(target=course, actor=actor, values=values, summary=f"Edited course {course.title}")
    return course


@transaction.atomic
def course_archive_set(*, course: Course, actor: User, archived: bool) -> Course:
    _archive_set(target=course, actor=actor, archived=archived, label=f"course {course.title}")
    return course


@transaction.atomic
def cohort_create(*, course: Course, actor: User, values: Mapping[str, object]) -> Cohort:
    """A new cohort of the course, taught by the actor."""
    cohort = Cohort(course=course)
    _changes(cohort, values)
    cohort.full_clean()
    cohort.save()
    enrolment_set(user=actor, cohort=cohort, role=Role.INSTRUCTOR)
    audit_record(
        cohort=cohort,
        actor=actor,
        action="cohort.create",
        summary=f"Created cohort {cohort.name} of {course.title}",
        detail={"cohort": cohort.slug},
    )
    return cohort


@transaction.atomic
def cohort_update(*, cohort: Cohort, actor: User, values: Mapping[str, object]) -> Cohort:
    _update(target=cohort, actor=actor, values=values, summary="Edited cohort settings")
    return cohort


@transaction.atomic
def cohort_archive_set(*, cohort: Cohort, actor: User, archived: bool) -> Cohort:
    _archive_set(target=cohort, actor=actor, archived=archived, label=f"cohort {cohort.name}")
    return cohort
