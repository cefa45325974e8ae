"""The production settings: deploy checks pass, and a missing secret stops start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from labplatform import env
from tests.support.processes import ROOT


def run_manage(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    clean.update(environment)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy() -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        KERNELLAB_ENV="production",
        SECRET_KEY="a" * 20 + "-production-secret-" + "b" * 30,
        ALLOWED_HOSTS="labs.example.org",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_development_settings_do_not_pass_check_deploy() -> None:
    # Proves the check above can fail: the dev defaults are deliberately insecure.
    result = run_manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG on


def test_missing_secret_key_in_production_fails_with_a_clear_message() -> None:
    result = run_manage("check", KERNELLAB_ENV="production", ALLOWED_HOSTS="labs.example.org")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "KERNELLAB_ENV=production" in result.stderr


def test_bad_environment_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match=r"SOME_FLAG='maybe'"):
        env.env_bool("SOME_FLAG", False)
    monkeypatch.setenv("SOME_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER='ten': expected a whole number"):
        env.env_int("SOME_NUMBER", 1)
    monkeypatch.setenv("VIRT", "xen")
    with pytest.raises(ImproperlyConfigured, match="expected one of auto, kvm, qemu"):
        env.env_choice("VIRT", "auto", ("auto", "kvm", "qemu"))


def test_database_url_selects_postgres() -> None:
    result = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])",
        DATABASE_URL="postgres://kl:pw@db.example.org:5432/kernellab",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"


def _email_settings(**environment: str) -> list[str]:
    result = run_manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.EMAIL_USE_SSL)",
        **environment,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_email_host_selects_smtp_and_console_stays_the_default() -> None:
    assert _email_settings()[0] == "django.core.mail.backends.console.EmailBackend"
    assert _email_settings(EMAIL_HOST="smtp.example.org", EMAIL_USE_SSL="1") == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.org",
        "465",
        "False",
        "True",
    ]
