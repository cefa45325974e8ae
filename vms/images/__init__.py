"""Guest images: recipes and their cached builds.

`ensure_image()` is what the platform calls: the cached image of a recipe,
built first if it is missing (with progress reported to the caller).
"""

from __future__ import annotations

from django.conf import settings

from vms.images.builder import BuiltImage, ImageBuildError, Progress, build_image, cached_image
from vms.images.recipe import RecipeError, recipe_dir

DEFAULT_RECIPE = "kernel-lab"

__all__ = ["BuiltImage", "ImageBuildError", "RecipeError", "ensure_image", "find_image"]


def find_image(recipe: str = DEFAULT_RECIPE) -> BuiltImage | None:
    return cached_image(recipe_dir(recipe), settings.IMAGE_CACHE_DIR)


def ensure_image(recipe: str = DEFAULT_RECIPE, *, progress: Progress) -> BuiltImage:
    image = find_image(recipe)
    if image is not None:
        return image
    return build_image(recipe_dir(recipe), settings.IMAGE_CACHE_DIR, progress=progress)
