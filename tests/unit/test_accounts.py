from __future__ import annotations

from django.core import mail
from django.test import Client

from tests.conftest import PASSWORD, World


def test_login_with_password_then_logout(world: World) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "Hello, kernel module" in client.get("/").content.decode()

    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_shows_an_error(world: World) -> None:
    response = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_logout_by_get_is_refused(world: World) -> None:
    client = Client()
    client.force_login(world.alice)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/").status_code == 200


def test_password_change(world: World) -> None:
    client = Client()
    client.force_login(world.alice)
    response = client.post(
        "/accounts/password/change/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-much-longer-passphrase-7",
            "new_password2": "a-much-longer-passphrase-7",
        },
    )
    assert response.status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.check_password("a-much-longer-passphrase-7")


def test_password_reset_sends_a_working_link(world: World) -> None:
    client = Client()
    client.post("/accounts/password/reset/", {"email": "alice@example.org"})
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Reset your KernelLab password"
    link = next(line for line in message.body.splitlines() if "/password/reset/" in line)
    path = link.split("testserver", 1)[1]
    form = client.get(path, follow=True)
    assert form.status_code == 200
    assert b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0],
        {
            "new_password1": "reset-to-something-long-9",
            "new_password2": "reset-to-something-long-9",
        },
    )
    assert done.status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.check_password("reset-to-something-long-9")


def test_password_reset_for_unknown_address_reveals_nothing(world: World) -> None:
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 0
