"""Helpers for the instructor's roster tests: a TA persona, and following a
mailed set-password link the way its recipient would."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.mail import EmailMessage
from django.test import Client

from labplatform.accounts.models import User
from labplatform.courses.models import Role
from labplatform.courses.services import enrolment_set
from tests.conftest import World, make_user


def make_ta(world: World) -> User:
    """Tara assists in autumn: she may look, not change."""
    tara = make_user("tara")
    enrolment_set(user=tara, cohort=world.autumn, role=Role.TA)
    return tara


def set_password_link(message: EmailMessage) -> str:
    match = re.search(r"https?://\S+/accounts/password/reset/\S+/\S+/", str(message.body))
    assert match, f"no set-password link in:\n{message.body}"
    return urlsplit(match.group(0)).path


def set_password_from_mail(message: EmailMessage, password: str) -> None:
    """Open the mailed link, choose `password`, and expect Django to accept it."""
    client = Client()
    response = client.get(set_password_link(message))
    assert response.status_code == 302  # to the same page, token moved into the session
    form_url = response["Location"]
    page = client.get(form_url)
    assert page.status_code == 200
    assert page.context["validlink"], "the mailed link was refused"
    done = client.post(form_url, {"new_password1": password, "new_password2": password})
    assert done.status_code == 302, done.content.decode()
