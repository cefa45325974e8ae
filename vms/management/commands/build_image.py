"""manage.py build_image [recipe] [--force]: build (or find) a guest image."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from vms.images import DEFAULT_RECIPE, ImageBuildError, RecipeError
from vms.images.builder import build_image
from vms.images.recipe import recipe_dir


class Command(BaseCommand):
    help = "Build the guest image of a recipe, unless the cached one is current."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("recipe", nargs="?", default=DEFAULT_RECIPE)
        parser.add_argument("--force", action="store_true", help="rebuild even if cached")

    def handle(self, *args: Any, recipe: str, force: bool, **options: Any) -> None:
        started = time.monotonic()

        def progress(text: str) -> None:
            self.stdout.write(f"[{time.monotonic() - started:6.1f}s] {text}")

        try:
            image = build_image(
                recipe_dir(recipe), settings.IMAGE_CACHE_DIR, progress=progress, force=force
            )
        except (ImageBuildError, RecipeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{image.name} {image.hash[:12]}: kernel {image.kernel_release}, {image.directory}"
            )
        )
