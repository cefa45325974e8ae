"""Build a guest image from a recipe: debootstrap -> configured root fs ->
small initramfs -> ext4 -> qcow2, plus the kernel and initrd for direct boot
(the kernel as an uncompressed PVH ELF where it can be: vms/images/kernel.py;
the initramfs our own: vms/images/initramfs.py).

Images are cached in ``<cache>/<name>-<hash12>/`` and only rebuilt when the
recipe changes. A build happens in a temporary folder renamed into place at
the end, under a lock, so a crash never leaves a half image that looks done.
Needs root (debootstrap, chroot).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vms.images.initramfs import InitramfsError, initramfs_build
from vms.images.kernel import pvh_vmlinux
from vms.images.recipe import Recipe, load_recipe, recipe_files, recipe_hash

Progress = Callable[[str], None]
MANIFEST = "image.json"


class ImageBuildError(Exception):
    pass


@dataclass(frozen=True)
class BuiltImage:
    name: str
    hash: str
    directory: Path
    kernel_release: str
    cmdline: str
    kernel_file: str = "vmlinuz"  # "vmlinux" when the kernel boots through PVH

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / self.kernel_file

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @classmethod
    def load(cls, directory: Path) -> BuiltImage | None:
        try:
            data = json.loads((directory / MANIFEST).read_text())
            image = cls(
                name=data["name"],
                hash=data["hash"],
                directory=directory,
                kernel_release=data["kernel_release"],
                cmdline=data["cmdline"],
                kernel_file=data.get("kernel_file", "vmlinuz"),
            )
        except (OSError, ValueError, KeyError):
            return None
        complete = all(p.is_file() for p in (image.disk, image.kernel, image.initrd))
        return image if complete else None


def image_dir(cache_dir: Path, recipe: Recipe, digest: str) -> Path:
    return cache_dir / f"{recipe.name}-{digest[:12]}"


def cached_image(folder: Path, cache_dir: Path) -> BuiltImage | None:
    recipe = load_recipe(folder)
    return BuiltImage.load(image_dir(cache_dir, recipe, recipe_hash(recipe, folder)))


def build_image(
    folder: Path, cache_dir: Path, *, progress: Progress, force: bool = False
) -> BuiltImage:
    recipe = load_recipe(folder)
    digest = recipe_hash(recipe, folder)
    final = image_dir(cache_dir, recipe, digest)
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o755)  # noqa: S103 - libvirt's qemu user reads the images
    with _lock(cache_dir / f".{recipe.name}.lock"):
        existing = BuiltImage.load(final)
        if existing is not None and not force:
            return existing
        work = cache_dir / f".{final.name}.building"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            _Build(recipe, folder, digest, work, cache_dir, progress).run()
            shutil.rmtree(final, ignore_errors=True)
            os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    image = BuiltImage.load(final)
    if image is None:
        raise ImageBuildError(f"{final}: the build finished but the image is incomplete")
    progress("Image ready")
    return image


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Build:
    def __init__(
        self,
        recipe: Recipe,
        folder: Path,
        digest: str,
        work: Path,
        cache_dir: Path,
        progress: Progress,
    ) -> None:
        self.recipe, self.folder, self.digest = recipe, folder, digest
        self.work, self.cache_dir, self.progress = work, cache_dir, progress
        self.rootfs = work / "rootfs"
        self.log = work / "build.log"
        self.started = time.monotonic()

    def run(self) -> None:
        self.debootstrap()
        self.configure()
        release, kernel_file, modules = self.kernel_and_initramfs()
        self.disk()
        manifest = {
            "name": self.recipe.name,
            "hash": self.digest,
            "kernel_release": release,
            "kernel_file": kernel_file,
            "initramfs_modules": modules,
            "cmdline": self.recipe.cmdline,
            "packages": self.recipe.packages,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - self.started, 1),
        }
        (self.work / MANIFEST).write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(self.rootfs)

    def sh(self, step: str, argv: list[str], on_line: Callable[[str], None] | None = None) -> None:
        with self.log.open("a") as log:
            log.write(f"\n$ {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if on_line is not None:
                    on_line(line)
            if proc.wait() != 0:
                log.flush()
                tail = "".join(self.log.read_text().splitlines(keepends=True)[-20:])
                raise ImageBuildError(f"image build failed at '{step}':\n{tail}")

    def debootstrap(self) -> None:
        self.progress("Building the guest image: downloading packages (1/4)")
        apt_cache = self.cache_dir / "debs"
        apt_cache.mkdir(exist_ok=True)
        counts = {"Retrieving": 0, "Unpacking": 0, "Configuring": 0}
        last = [0.0]

        def on_line(line: str) -> None:
            match = re.match(r"I: (Retrieving|Unpacking|Configuring) ", line)
            if not match:
                return
            counts[match.group(1)] += 1
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                done = counts["Retrieving"] + counts["Unpacking"] + counts["Configuring"]
                self.progress(f"Building the guest image: installing packages ({done} steps)")

        self.sh(
            "debootstrap",
            [
                "debootstrap",
                "--variant=minbase",
                f"--cache-dir={apt_cache}",
                f"--include={','.join(self.recipe.packages)}",
                self.recipe.suite,
                str(self.rootfs),
                self.recipe.mirror,
            ],
            on_line,
        )

    def configure(self) -> None:
        self.progress("Building the guest image: configuring (2/4)")
        for path in recipe_files(self.folder):
            target = self.rootfs / path.relative_to(self.folder / "files")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (self.rootfs / "etc/hostname").write_text("kernellab\n")
        (self.rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 kernellab\n")
        system = self.rootfs / "etc/systemd/system"
        for unit in self.recipe.mask_units:
            (system / unit).unlink(missing_ok=True)
            (system / unit).symlink_to("/dev/null")
        for relative in self.recipe.masked_files:
            masked = self.rootfs / relative
            masked.parent.mkdir(parents=True, exist_ok=True)
            masked.unlink(missing_ok=True)
            masked.symlink_to("/dev/null")
        self.chroot("passwd", ["passwd", "-d", "root"])
        self.chroot("default target", ["systemctl", "set-default", self.recipe.default_target])
        if self.recipe.enable_units:
            self.chroot("enable units", ["systemctl", "enable", *self.recipe.enable_units])
        # The apt cache and lists are 100+ MB the guest never needs.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (self.rootfs / junk).glob("*"):
                if item.is_file():
                    item.unlink()

    def chroot(self, step: str, argv: list[str]) -> None:
        self.sh(step, ["chroot", str(self.rootfs), *argv])

    def kernel_and_initramfs(self) -> tuple[str, str, list[str]]:
        """The kernel to boot directly (its release, its file name here) and
        our initramfs (the modules it loads). Debian's own initrd in the
        image's /boot is never booted."""
        self.progress("Building the guest image: kernel and initramfs (3/4)")
        releases = sorted(p.name for p in (self.rootfs / "lib/modules").iterdir())
        if len(releases) != 1:
            raise ImageBuildError(f"expected one kernel in the image, found {releases}")
        release = releases[0]
        bzimage = (self.rootfs / f"boot/vmlinuz-{release}").read_bytes()
        vmlinux = pvh_vmlinux(bzimage)
        kernel_file = "vmlinuz" if vmlinux is None else "vmlinux"
        (self.work / kernel_file).write_bytes(bzimage if vmlinux is None else vmlinux)
        try:
            modules = initramfs_build(
                rootfs=self.rootfs,
                release=release,
                modules=self.recipe.initramfs_modules,
                out=self.work / "initrd.img",
            )
        except InitramfsError as exc:
            raise ImageBuildError(f"image build failed at 'initramfs': {exc}") from None
        for name in (kernel_file, "initrd.img"):
            os.chmod(self.work / name, 0o644)
        return release, kernel_file, modules

    def disk(self) -> None:
        self.progress("Building the guest image: writing the disk (4/4)")
        raw = self.work / "disk.raw"
        with raw.open("wb") as f:
            f.truncate(self.recipe.disk_gib * 1024**3)
        self.sh(
            "mkfs", ["mkfs.ext4", "-q", "-F", "-L", "kernellab", "-d", str(self.rootfs), str(raw)]
        )
        self.sh(
            "qemu-img",
            ["qemu-img", "convert", "-O", "qcow2", str(raw), str(self.work / "disk.qcow2")],
        )
        raw.unlink()
        os.chmod(self.work / "disk.qcow2", 0o644)
