"""The warm pool's profiles: a saved guest is only ever restored into the
domain layout it was saved with, and the entries nothing can claim any more
(an image rebuilt, a layout changed, a folder of older code) are removed by
the reaper's housekeeping (pool.remove_stale), not left on disk for ever.

The image cache is real: a built image is a folder with its manifest where
vms.images looks for the recipe's current build."""

from __future__ import annotations

import json
import os
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.conf import LazySettings

from vms import pool
from vms.guest_folder import GuestFolder
from vms.hypervisor.domain import DomainSpec
from vms.images import DEFAULT_RECIPE, BuiltImage, find_image
from vms.images.builder import MANIFEST, image_dir
from vms.images.recipe import load_recipe, recipe_dir, recipe_hash

BUILD_DEADLINE = 600.0


def cache_image(cache: Path, digest: str) -> BuiltImage:
    """A build of the default recipe in the image cache, as the builder leaves it."""
    recipe = load_recipe(recipe_dir(DEFAULT_RECIPE))
    folder = image_dir(cache, recipe, digest)
    folder.mkdir(parents=True)
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (folder / name).write_bytes(b"")
    manifest = {"name": recipe.name, "hash": digest, "kernel_release": "6.1", "cmdline": "x"}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    image = BuiltImage.load(folder)
    assert image is not None
    return image


@pytest.fixture
def current_image(tmp_path: Path, settings: LazySettings) -> BuiltImage:
    settings.VM_DIR = tmp_path / "vms"
    settings.IMAGE_CACHE_DIR = tmp_path / "images"
    folder = recipe_dir(DEFAULT_RECIPE)
    image = cache_image(tmp_path / "images", recipe_hash(load_recipe(folder), folder))
    assert find_image() == image, "the cache's current build of the recipe"
    return image


def saved_entry(profile: pool.Profile) -> GuestFolder:
    """A published pool entry with its saved memory, as guests.pool_add_entry leaves it."""
    domain_uuid = uuid.uuid4()
    building = pool.building_folder(profile, domain_uuid)
    building.create()
    building.state_file.write_bytes(b"saved memory")
    return GuestFolder(pool.publish(building, domain_uuid, profile))


def pty_console_layout(self: DomainSpec, devices: ET.Element) -> None:
    """The consoles as an older builder wrote them: a layout of the past."""
    for tag, log in (("serial", self.kernel_log), ("console", self.shell_log)):
        element = ET.SubElement(devices, tag, type="pty")
        ET.SubElement(element, "log", file=str(log), append="on")


def test_a_guest_saved_under_another_domain_layout_is_never_claimed(
    current_image: BuiltImage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with monkeypatch.context() as old_code:
        old_code.setattr(DomainSpec, "_consoles", pty_console_layout)
        saved_long_ago = pool.Profile(current_image, "qemu", 1024, 1)
        saved_entry(saved_long_ago)
        assert pool.ready_count(saved_long_ago) == 1
        old_key = saved_long_ago.key
    profile = pool.Profile(current_image, "qemu", 1024, 1)
    assert profile.key != old_key
    assert pool.claim(profile, GuestFolder(tmp_path / "vms" / "a-lab")) is None


def test_entries_of_an_image_that_was_rebuilt_are_removed(
    current_image: BuiltImage, tmp_path: Path
) -> None:
    old_image = cache_image(tmp_path / "images", "0" * 64)
    stale = pool.Profile(old_image, "qemu", 1024, 1)
    current = pool.Profile(current_image, "qemu", 1024, 1)
    saved_entry(stale)
    kept = saved_entry(current)
    pool.remove_stale(BUILD_DEADLINE)
    assert not stale.directory.exists()
    assert kept.state_file.is_file()
    assert pool.ready_count(current) == 1


def test_entries_of_a_changed_layout_are_removed(
    current_image: BuiltImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old_code:
        old_code.setattr(DomainSpec, "_consoles", pty_console_layout)
        stale = pool.Profile(current_image, "qemu", 1024, 1)
        saved_entry(stale)
    pool.remove_stale(BUILD_DEADLINE)
    assert not stale.directory.exists()


def test_a_folder_of_older_code_that_does_not_say_what_it_is_is_removed(
    current_image: BuiltImage, tmp_path: Path
) -> None:
    legacy = tmp_path / "vms" / "pool" / "9cbd25a9416a128e"
    entry = GuestFolder(legacy / str(uuid.uuid4()))
    entry.create()
    entry.state_file.write_bytes(b"saved memory")
    pool.remove_stale(BUILD_DEADLINE)
    assert not legacy.exists()


def test_a_stale_profiles_entry_being_built_right_now_is_left_to_its_worker(
    current_image: BuiltImage, tmp_path: Path
) -> None:
    old_image = cache_image(tmp_path / "images", "0" * 64)
    stale = pool.Profile(old_image, "qemu", 1024, 1)
    saved_entry(stale)
    building = pool.building_folder(stale, uuid.uuid4())
    building.create()
    pool.remove_stale(BUILD_DEADLINE)
    assert pool.ready_count(stale) == 0
    assert building.directory.is_dir(), "a worker may be booting it right now"
    long_ago = time.time() - 2 * BUILD_DEADLINE
    os.utime(building.directory, (long_ago, long_ago))
    pool.remove_stale(BUILD_DEADLINE)
    assert not stale.directory.exists()
