"""manage.py try_exercise <slug> [--variant V ...] [--mode check|submit|both]

An exercise author's loop: every variant of one exercise folder (starter,
solution, wrong/<name>) in a real guest, through exactly the code the
platform grades with (exercises.trial, also what the catalogue tests run).
The folder is read as it is on disk, validated, and nothing is written to
the database. Exits non-zero when any variant does not do what it should.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from exercises.management.catalogue_command import CatalogueCommand
from exercises.manifest import MODES, CatalogueError, load_exercise
from exercises.models import ExerciseVersion
from exercises.trial import PristineGuest, VariantError, try_variant, variant_plan
from vms.images import ensure_image


class Command(CatalogueCommand):
    help = "Run an exercise's starter, solution and wrong answers in real guests, as grading does."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("slug")
        parser.add_argument("--variant", action="append", help="starter, solution or wrong/<name>")
        parser.add_argument("--mode", choices=[*MODES, "both"], default="both")

    def handle(self, *args: Any, slug: str, root: Path | None, **options: Any) -> None:
        folder = (root or Path(settings.EXERCISES_CATALOGUE_DIR)) / slug
        try:
            source = load_exercise(folder)
        except CatalogueError as exc:
            raise CommandError(f"{folder} is not a valid exercise:\n{exc}") from exc
        # An unsaved version: what sync_exercises would store, read from disk.
        version = ExerciseVersion(
            content_hash=source.content_hash,
            manifest=source.manifest.model_dump(mode="json"),
            instructions_md=source.instructions_md,
            bundle=source.bundle(),
        )
        plan = [
            (variant, mode)
            for variant, mode in variant_plan(folder)
            if (not options["variant"] or variant in options["variant"])
            and options["mode"] in ("both", mode)
        ]
        if not plan:
            raise CommandError("no variant matches --variant/--mode")
        image = ensure_image(source.manifest.vm.recipe, progress=self.stdout.write)
        work = Path(settings.VM_DIR) / f"try-{slug}"
        shutil.rmtree(work, ignore_errors=True)
        vm = source.manifest.vm
        self.stdout.write(f"booting a {vm.memory_mib} MiB guest of {image.name} ...")
        guest = PristineGuest(work, image, memory_mib=vm.memory_mib, vcpus=vm.vcpus)
        bad = 0
        try:
            for variant, mode in plan:
                started = time.monotonic()
                try:
                    trial = try_variant(guest, version, folder, variant, mode)
                except VariantError as exc:
                    bad += 1
                    self.stdout.write(self.style.ERROR(f"{variant} ({mode}): {exc}"))
                    continue
                line = f"{variant} ({mode}, {time.monotonic() - started:.0f} s): {trial.summary()}"
                if trial.problems:
                    bad += 1
                    self.stdout.write(self.style.ERROR(line))
                    for problem in trial.problems:
                        self.stdout.write(f"    {problem}")
                else:
                    self.stdout.write(self.style.SUCCESS(line))
        finally:
            guest.close()
        if bad:
            raise CommandError(f"{bad} of {len(plan)} runs did not do what they should")
        self.stdout.write(self.style.SUCCESS(f"all {len(plan)} runs as expected"))
