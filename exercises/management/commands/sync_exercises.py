"""manage.py sync_exercises [--root PATH]: copy the catalogue into the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exercises.manifest import CatalogueError, load_catalogue
from exercises.services import catalogue_sync


class Command(BaseCommand):
    help = (
        "Validate every exercise folder, then create or update the exercises and their "
        "versions; exercises whose folder is gone are deactivated. Nothing is synced if "
        "any folder is broken."
    )
    requires_system_checks: list[str] = []  # it validates --root itself, in full

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
            raise CommandError(f"Nothing synced: {exc.summary(root)}") from None
        changes = catalogue_sync(sources=sources)
        for change in changes:
            self.stdout.write(change)
        if changes:
            self.stdout.write(
                self.style.SUCCESS(f"{len(sources)} exercises synced, {len(changes)} change(s)")
            )
        else:
            self.stdout.write(f"{len(sources)} exercises already up to date")
