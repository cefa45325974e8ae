"""Image recipes: what a guest image contains, parsed by one schema.

A recipe is a folder: ``recipe.toml`` plus ``files/``, a tree copied over the
root filesystem. Its hash covers the parsed recipe, every file and the
builder's own version, so any change to any of them means a new image.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Bump when the build steps change in a way that changes the image.
# 2: our own initramfs (busybox), the kernel as a PVH ELF, masked_files.
BUILDER_VERSION = 2

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


class RecipeError(Exception):
    pass


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    suite: str = Field(pattern=r"^[a-z]+$")
    mirror: str = Field(pattern=r"^https?://")
    packages: list[str] = Field(min_length=1)
    cmdline: str
    initramfs_modules: list[str] = Field(min_length=1)
    disk_gib: int = Field(ge=2, le=64)
    default_target: str = "multi-user.target"
    mask_units: list[str] = []
    # Paths in the image made links to /dev/null: systemd's way to switch off
    # a generator, a tmpfiles.d or a udev rules file.
    masked_files: list[str] = []
    enable_units: list[str] = []

    @field_validator("masked_files")
    @classmethod
    def _inside_the_image(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if path.startswith("/") or ".." in path.split("/") or not path.strip("/"):
                raise ValueError(f"{path!r} must be a path inside the image, relative to its /")
        return paths


def recipe_dir(name: str) -> Path:
    return RECIPES_DIR / name


def load_recipe(folder: Path) -> Recipe:
    path = folder / "recipe.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RecipeError(f"{path}: {problems}") from None
    if recipe.name != folder.name:
        raise RecipeError(f"{path}: name {recipe.name!r} must match its folder {folder.name!r}")
    return recipe


def recipe_files(folder: Path) -> list[Path]:
    files = folder / "files"
    return sorted(p for p in files.rglob("*") if p.is_file()) if files.is_dir() else []


def recipe_hash(recipe: Recipe, folder: Path) -> str:
    digest = hashlib.sha256()
    digest.update(f"builder:{BUILDER_VERSION}\n".encode())
    digest.update(json.dumps(recipe.model_dump(), sort_keys=True).encode())
    for path in recipe_files(folder):
        digest.update(f"\n{path.relative_to(folder)}:{path.stat().st_mode & 0o777:o}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
