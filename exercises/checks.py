"""Start-up refuses a broken catalogue.

The "exercises" system check runs with manage.py check, runserver and every
command that checks the project; asgi.py calls `require_valid_catalogue`
because uvicorn runs no system checks. Every problem of every folder is an
error of its own (exercises.E001), with the message validate_exercises prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

from exercises.manifest import CatalogueError, load_catalogue


def catalogue_check(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if app_configs is not None and not any(c.name == "exercises" for c in app_configs):
        return []
    try:
        load_catalogue()
    except CatalogueError as exc:
        return [Error(str(problem), id="exercises.E001") for problem in exc.problems]
    return []


def require_valid_catalogue() -> None:
    """Raise ImproperlyConfigured, listing every problem, if the catalogue is broken."""
    try:
        load_catalogue()
    except CatalogueError as exc:
        raise ImproperlyConfigured(
            f"The exercise catalogue is broken ({len(exc.problems)} problem(s)):\n{exc}"
        ) from None
