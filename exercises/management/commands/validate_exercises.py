"""manage.py validate_exercises [--root PATH]: every problem of every exercise folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exercises.manifest import CatalogueError, load_catalogue


class Command(BaseCommand):
    help = "Check every exercise folder of the catalogue, reporting all problems at once."
    # The "exercises" system check would stop at the first broken folder, and
    # look at the configured catalogue rather than --root.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--root", type=Path, default=None, help="catalogue folder (EXERCISES_CATALOGUE_DIR)"
        )

    def handle(self, *args: Any, root: Path | None, **options: Any) -> None:
        root = Path(settings.EXERCISES_CATALOGUE_DIR) if root is None else root
        try:
            sources = load_catalogue(root)
        except CatalogueError as exc:
            for problem in exc.problems:
                self.stdout.write(str(problem))
            raise CommandError(exc.summary(root)) from None
        self.stdout.write(self.style.SUCCESS(f"{len(sources)} exercises OK"))
