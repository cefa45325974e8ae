"""sync_exercises: the catalogue folders become Exercise rows and immutable
versions; syncing again changes nothing; a folder that is gone deactivates its
exercise but never deletes it."""

from __future__ import annotations

import io
import shutil
import tarfile
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from exercises.manifest import load_catalogue
from exercises.models import Exercise, ExerciseVersion
from labplatform.courses.models import Assignment
from tests.conftest import make_exercise

REAL_CATALOGUE = Path(settings.EXERCISES_CATALOGUE_DIR)
SLUGS = ["bpftrace-syscalls", "hello-module", "sysctl-tuning"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    root = tmp_path / "catalogue"
    shutil.copytree(REAL_CATALOGUE, root)
    return root


def sync(root: Path) -> str:
    out = StringIO()
    call_command("sync_exercises", root=root, stdout=out)
    return out.getvalue()


def test_sync_creates_exercises_and_their_first_versions(catalogue: Path) -> None:
    output = sync(catalogue)
    assert "hello-module: added" in output
    assert "3 exercises synced" in output
    sources = {source.slug: source for source in load_catalogue(catalogue)}
    assert sorted(Exercise.objects.values_list("slug", flat=True)) == SLUGS
    for exercise in Exercise.objects.select_related("current_version"):
        source = sources[exercise.slug]
        version = exercise.current_version
        assert version is not None
        assert exercise.versions.count() == 1
        assert version.content_hash == source.content_hash
        assert version.manifest == source.manifest.model_dump(mode="json")
        assert version.parsed_manifest == source.manifest
        assert version.instructions_md == exercise.instructions == source.instructions_md
        assert bytes(version.bundle) == source.bundle()
        assert exercise.points == source.manifest.total_points
        assert exercise.title == source.manifest.title
        assert exercise.is_active
    hello = Exercise.objects.get(slug="hello-module")
    assert (hello.difficulty, hello.get_difficulty_display(), hello.points) == (
        "beginner",
        "Beginner",
        100,
    )
    with tarfile.open(fileobj=io.BytesIO(bytes(hello.versions.get().bundle))) as tar:
        assert "check/kernellab_check.py" in tar.getnames()


def test_sync_again_changes_nothing(catalogue: Path) -> None:
    sync(catalogue)
    stamps = dict(Exercise.objects.values_list("slug", "updated_at"))
    output = sync(catalogue)
    assert output.strip() == "3 exercises already up to date"
    assert ExerciseVersion.objects.count() == 3
    assert dict(Exercise.objects.values_list("slug", "updated_at")) == stamps


def test_a_changed_checker_makes_a_new_version(catalogue: Path) -> None:
    sync(catalogue)
    hello = Exercise.objects.get(slug="hello-module")
    first = hello.current_version
    assert first is not None
    with (catalogue / "hello-module" / "check" / "check.py").open("a") as f:
        f.write("\n# clearer messages\n")
    output = sync(catalogue)
    assert output.splitlines()[0].startswith("hello-module: new version ")
    assert "sysctl-tuning" not in output
    hello.refresh_from_db()
    assert hello.current_version is not None
    assert hello.current_version.pk != first.pk
    assert list(hello.versions.order_by("pk")) == [first, hello.current_version]


def test_changed_instructions_update_the_exercise_and_make_a_version(catalogue: Path) -> None:
    sync(catalogue)
    readme = catalogue / "sysctl-tuning" / "README.md"
    readme.write_text(readme.read_text() + "\nOne more hint.\n")
    output = sync(catalogue)
    assert "sysctl-tuning: updated instructions" in output
    assert "sysctl-tuning: new version" in output
    exercise = Exercise.objects.get(slug="sysctl-tuning")
    assert exercise.instructions.endswith("One more hint.\n")
    assert exercise.versions.count() == 2


def test_a_changed_solution_is_not_a_new_version(catalogue: Path) -> None:
    sync(catalogue)
    solution = catalogue / "hello-module" / "solution" / "files" / "root" / "hello" / "hello.c"
    solution.write_text(solution.read_text().replace("staff", "team"))
    assert "already up to date" in sync(catalogue)
    assert ExerciseVersion.objects.count() == 3


def test_a_removed_folder_deactivates_its_exercise_and_keeps_it(catalogue: Path) -> None:
    sync(catalogue)
    shutil.move(catalogue / "bpftrace-syscalls", catalogue.parent / "parked")
    output = sync(catalogue)
    assert output.splitlines()[0] == "bpftrace-syscalls: deactivated (its folder is gone)"
    gone = Exercise.objects.get(slug="bpftrace-syscalls")
    assert not gone.is_active
    assert gone.current_version is not None
    assert gone.versions.count() == 1
    assert "already up to date" in sync(catalogue)

    shutil.move(catalogue.parent / "parked", catalogue / "bpftrace-syscalls")
    output = sync(catalogue)
    assert "bpftrace-syscalls: updated is_active" in output
    gone.refresh_from_db()
    assert gone.is_active
    assert gone.versions.count() == 1


def test_going_back_to_an_earlier_content_reuses_its_version(catalogue: Path) -> None:
    sync(catalogue)
    checker = catalogue / "hello-module" / "check" / "check.py"
    original = checker.read_text()
    checker.write_text(original + "\n# experiment\n")
    sync(catalogue)
    checker.write_text(original)
    assert "hello-module: back to version" in sync(catalogue)
    assert Exercise.objects.get(slug="hello-module").versions.count() == 2


def test_exercises_made_outside_the_catalogue_are_left_alone(catalogue: Path) -> None:
    benchmark = make_exercise("benchmark", "Benchmark", "bench")
    sync(catalogue)
    benchmark.refresh_from_db()
    assert benchmark.is_active


def test_nothing_is_synced_while_any_folder_is_broken(catalogue: Path) -> None:
    sync(catalogue)
    (catalogue / "hello-module" / "README.md").unlink()
    checker = catalogue / "sysctl-tuning" / "check" / "check.py"
    checker.write_text(checker.read_text() + "\n# changed\n")
    out = StringIO()
    with pytest.raises(CommandError, match="Nothing synced: 1 problem in 1 exercise folder"):
        call_command("sync_exercises", root=catalogue, stdout=out)
    assert "hello-module/README.md: missing" in out.getvalue()
    assert ExerciseVersion.objects.count() == 3


def test_seed_demo_syncs_the_catalogue_and_assigns_it() -> None:
    with override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        EXERCISES_CATALOGUE_DIR=REAL_CATALOGUE,
    ):
        call_command("seed_demo", stdout=StringIO())
    assert sorted(Exercise.objects.filter(is_active=True).values_list("slug", flat=True)) == SLUGS
    assigned = Assignment.objects.filter(cohort__slug="demo").values_list("exercise__slug")
    assert sorted(slug for (slug,) in assigned) == SLUGS
