"""manage.py sync_exercises [--root PATH]: copy the catalogue into the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exercises.management.catalogue_command import CatalogueCommand
from exercises.services import catalogue_sync


class Command(CatalogueCommand):
    help = (
        "Validate every exercise folder, then create or update the exercises and their "
        "versions; exercises whose folder is gone are deactivated. Nothing is synced if "
        "any folder is broken."
    )

    def handle(self, *args: Any, root: Path | None, **options: Any) -> None:
        sources = self.load(root, failure="Nothing synced: ")
        changes = catalogue_sync(sources=sources)
        for change in changes:
            self.stdout.write(change)
        if changes:
            self.stdout.write(
                self.style.SUCCESS(f"{len(sources)} exercises synced, {len(changes)} change(s)")
            )
        else:
            self.stdout.write(f"{len(sources)} exercises already up to date")
