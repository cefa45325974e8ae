"""manage.py validate_exercises [--root PATH]: every problem of every exercise folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exercises.management.catalogue_command import CatalogueCommand


class Command(CatalogueCommand):
    help = "Check every exercise folder of the catalogue, reporting all problems at once."

    def handle(self, *args: Any, root: Path | None, **options: Any) -> None:
        sources = self.load(root)
        self.stdout.write(self.style.SUCCESS(f"{len(sources)} exercises OK"))
