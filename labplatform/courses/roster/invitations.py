"""Mail to people put on a roster: a set-password link for a new account, a
note for an existing one. Both go out after the enrolment commits (a rolled
back import mails nobody), in one connection to the mail server."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from labplatform.accounts.models import User
from labplatform.courses.models import Cohort


def set_password_url(*, user: User) -> str:
    """The password_reset_confirm link: valid until the password is set or
    PASSWORD_RESET_TIMEOUT passes."""
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return settings.SITE_URL.rstrip("/") + path


def _message(*, user: User, cohort: Cohort, template: str) -> EmailMessage:
    context = {
        "user": user,
        "cohort": cohort,
        "site_url": settings.SITE_URL.rstrip("/"),
        # Only an invitation carries a link that sets the password.
        "set_password_url": set_password_url(user=user) if template == "invitation" else "",
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    subject = render_to_string(f"courses/roster/{template}_subject.txt", context)
    body = render_to_string(f"courses/roster/{template}_email.txt", context)
    return EmailMessage(subject=" ".join(subject.split()), body=body, to=[user.email])


def roster_mail_send(*, cohort: Cohort, invited: Iterable[User], added: Iterable[User]) -> int:
    """Send now: a set-password link to each invited (new) account, a "you
    were added" note to each existing one. Returns how many went out."""
    messages = [_message(user=user, cohort=cohort, template="invitation") for user in invited]
    messages += [
        _message(user=user, cohort=cohort, template="added") for user in added if user.email
    ]
    if not messages:
        return 0
    return get_connection().send_messages(messages) or 0


def roster_mail_after_commit(
    *, cohort: Cohort, invited: list[User] | None = None, added: list[User] | None = None
) -> None:
    transaction.on_commit(
        lambda: roster_mail_send(cohort=cohort, invited=invited or [], added=added or [])
    )
