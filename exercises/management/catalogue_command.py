"""What validate_exercises and sync_exercises share: --root, and reading the
whole catalogue with every problem printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exercises.manifest import CatalogueError, ExerciseSource, load_catalogue


class CatalogueCommand(BaseCommand):
    # The "exercises" system check would stop at the first broken folder, and
    # look at the configured catalogue rather than --root: these validate in full.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--root", type=Path, default=None, help="catalogue folder (EXERCISES_CATALOGUE_DIR)"
        )

    def load(self, root: Path | None, *, failure: str = "") -> list[ExerciseSource]:
        """Every folder of the catalogue, or CommandError after printing every
        problem (``path: field: reason``, one a line)."""
        root = Path(settings.EXERCISES_CATALOGUE_DIR) if root is None else root
        try:
            return load_catalogue(root)
        except CatalogueError as exc:
            for problem in exc.problems:
                self.stdout.write(str(problem))
            raise CommandError(f"{failure}{exc.summary(root)}") from None
