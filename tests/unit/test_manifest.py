"""The exercise format: what validate_exercises accepts and rejects, the
content hash, and the bundle a grading guest receives.

Broken exercises are copies of the real hello-module folder with one thing
changed, so each test shows that exactly that change is caught.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from exercises import folder as folder_module
from exercises import manifest as manifest_module
from exercises.checks import catalogue_check, require_valid_catalogue
from exercises.choices import Difficulty
from exercises.manifest import (
    CatalogueError,
    ExerciseManifest,
    Problem,
    load_catalogue,
    load_exercise,
)

REAL_CATALOGUE = Path(settings.EXERCISES_CATALOGUE_DIR)
CHECKLIB = REAL_CATALOGUE.parent / "checklib" / "kernellab_check.py"


def copy_exercise(root: Path, name: str, source: str = "hello-module") -> Path:
    target = root / name
    shutil.copytree(REAL_CATALOGUE / source, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(CatalogueError) as caught:
        load_exercise(folder)
    return caught.value.problems


def reasons(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


# -- the real catalogue -----------------------------------------------------------------


def test_the_real_catalogue_validates_clean() -> None:
    out = StringIO()
    call_command("validate_exercises", stdout=out)
    assert out.getvalue().strip() == "3 exercises OK"
    slugs = [source.slug for source in load_catalogue()]
    assert slugs == ["bpftrace-syscalls", "hello-module", "sysctl-tuning"]


def test_the_real_catalogue_uses_the_models_difficulty_vocabulary() -> None:
    for source in load_catalogue():
        assert source.manifest.difficulty in Difficulty.values
    assert {d.value for d in Difficulty} == {"beginner", "intermediate", "advanced"}


def test_a_stored_manifest_validates_again_unchanged() -> None:
    for source in load_catalogue():
        stored = source.manifest.model_dump(mode="json")
        assert ExerciseManifest.model_validate(stored) == source.manifest


def test_points_and_the_checks_of_each_mode() -> None:
    hello = load_exercise(REAL_CATALOGUE / "hello-module").manifest
    assert hello.grading.output_limit_bytes == 1 << 20  # the default
    check_ids = [c.id for c in hello.checks_for("check")]
    submit_ids = [c.id for c in hello.checks_for("submit")]
    # The hidden check only at Submit; the one that looks for a module left
    # loaded only on Check: the clean grading guest never has one.
    assert "reload_cycles" not in check_ids
    assert "reload_cycles" in submit_ids
    assert "not_left_loaded" in check_ids
    assert "not_left_loaded" not in submit_ids
    assert set(check_ids) | set(submit_ids) == set(hello.check_ids())
    # A grade is out of what Submit runs, and every exercise's grade out of 100.
    for source in load_catalogue():
        assert source.manifest.total_points == source.manifest.max_score("submit") == 100
    assert hello.max_score("check") == 100


def test_submit_must_run_some_check() -> None:
    stored = load_exercise(REAL_CATALOGUE / "hello-module").manifest.model_dump(mode="json")
    for spec in stored["checks"]:
        spec.update(hidden=False, check_only=True)
    with pytest.raises(ValueError, match="at least one check must not be check_only"):
        ExerciseManifest.model_validate(stored)


# -- one run reports everything ------------------------------------------------------------


def test_validate_exercises_reports_every_problem_of_every_folder(tmp_path: Path) -> None:
    root = tmp_path / "catalogue"
    copy_exercise(root, "bad-toml")
    (root / "bad-toml" / "exercise.toml").write_text('title = "unfinished\n')
    edit(
        copy_exercise(root, "unknown-key") / "exercise.toml", "topic =", 'colour = "blue"\ntopic ='
    )
    edit(copy_exercise(root, "duplicate-id") / "exercise.toml", 'id = "loads"', 'id = "builds"')
    edit(
        copy_exercise(root, "relative-artifact") / "exercise.toml",
        'path = "/root/hello"',
        'path = "root/hello"',
    )
    (copy_exercise(root, "missing-readme") / "README.md").unlink()
    (copy_exercise(root, "missing-checker") / "check" / "check.py").unlink()
    expect = copy_exercise(root, "unknown-expect") / "wrong" / "no-license" / "expect.toml"
    edit(expect, '"modinfo"', '"modinfo_x"')
    copy_exercise(root, "still-fine")

    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("validate_exercises", root=root, stdout=out)
    lines = out.getvalue().splitlines()
    printed = "\n".join(lines)

    def line(name: str, rel: str, text: str) -> None:
        prefix = f"{root / name / rel}: "
        assert any(ln.startswith(prefix) and text in ln for ln in lines), (prefix, text, printed)

    line("bad-toml", "exercise.toml", "not valid TOML")
    line("unknown-key", "exercise.toml", "colour: Extra inputs are not permitted")
    line("duplicate-id", "exercise.toml", "checks: check id 'builds' is used twice")
    line("relative-artifact", "exercise.toml", "grading.artifacts[0].path: must be an absolute")
    line("missing-readme", "README.md", "missing: every exercise needs instructions")
    line("missing-checker", "check/check.py", "missing: every exercise needs a checker")
    line("unknown-expect", "wrong/no-license/expect.toml", "fails[1]: no check 'modinfo_x'")
    assert "still-fine" not in printed
    assert str(caught.value).startswith(f"{len(lines)} problems in 7 exercise folders of {root}")


def test_one_folder_reports_all_its_problems_at_once(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    edit(folder / "exercise.toml", "memory_mib = 1024", "memory_mib = 64")
    edit(folder / "exercise.toml", "vcpus = 1", "vcpus = 0")
    (folder / "README.md").write_text("  \n")
    (folder / "notes.txt").write_text("todo")
    problems = problems_of(folder)
    assert {p.field for p in problems} >= {"vm.memory_mib", "vm.vcpus"}
    text = reasons(problems)
    assert "README.md: is empty" in text
    assert "notes.txt: unexpected" in text


def test_catalogue_error_reads_one_line_per_problem() -> None:
    error = CatalogueError(
        [Problem("/c/x/exercise.toml", "checks[0].id", "bad"), Problem("/c/x", "", "worse")]
    )
    assert str(error) == "/c/x/exercise.toml: checks[0].id: bad\n/c/x: worse"
    assert error.summary(Path("/c")) == "2 problems in 1 exercise folder of /c"


def test_an_empty_or_missing_catalogue_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="holds no exercise folder"):
        load_catalogue(tmp_path)
    with pytest.raises(CatalogueError, match="no such folder"):
        load_catalogue(tmp_path / "nowhere")


# -- what is checked statically -------------------------------------------------------------


def manifest_edit(old: str, new: str) -> Callable[[Path], None]:
    return lambda folder: edit(folder / "exercise.toml", old, new)


def remove(rel: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        target = folder / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return apply


def write(rel: str, text: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)

    return apply


def symlink(rel: str, target: str) -> Callable[[Path], None]:
    return lambda folder: (folder / rel).symlink_to(target)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            manifest_edit('"/root/hello"', '"/root/../etc"'),
            "exercise.toml: grading.artifacts[0].path: must be normalised "
            "(no '.', '..', '//' or trailing '/'): /etc",
            id="artifact-not-normalised",
        ),
        pytest.param(
            manifest_edit('"/root/hello"', '"/root/hello/"'),
            "exercise.toml: grading.artifacts[0].path: must be normalised",
            id="artifact-trailing-slash",
        ),
        pytest.param(
            manifest_edit('"/root/hello"', '"/proc/sys"'),
            "exercise.toml: grading.artifacts[0].path: is on a kernel pseudo file system",
            id="artifact-in-proc",
        ),
        pytest.param(
            manifest_edit(
                'path = "/root/hello"',
                'path = "/root"\n[[grading.artifacts]]\npath = "/root/hello"',
            ),
            "exercise.toml: grading.artifacts: /root/hello is inside /root, "
            "which is already collected",
            id="artifact-nested",
        ),
        pytest.param(
            manifest_edit('"/root/hello"', '"/root/my hello"'),
            "exercise.toml: grading.artifacts[0].path: may only use letters, digits and . _ @ + - "
            "between the slashes",
            id="artifact-with-space",
        ),
        pytest.param(
            manifest_edit('"/root/hello"', '"/"'),
            "exercise.toml: grading.artifacts[0].path: cannot be the whole file system",
            id="artifact-root",
        ),
        pytest.param(
            manifest_edit('difficulty = "beginner"', 'difficulty = "intro"'),
            "exercise.toml: difficulty: Input should be 'beginner', 'intermediate' or 'advanced'",
            id="difficulty-vocabulary",
        ),
        pytest.param(
            manifest_edit("points = 20", "points = 0"),
            "exercise.toml: checks[1].points: Input should be greater than 0",
            id="zero-points",
        ),
        pytest.param(
            manifest_edit("points = 20", 'points = "20"'),
            "exercise.toml: checks[1].points: Input should be a valid integer",
            id="points-as-text",
        ),
        pytest.param(
            manifest_edit('id = "builds"', 'id = "Builds!"'),
            "exercise.toml: checks[1].id: String should match pattern",
            id="check-id-not-a-slug",
        ),
        pytest.param(
            lambda folder: (folder / "exercise.toml").write_text(
                (folder / "exercise.toml").read_text().replace("hidden = false", "hidden = true")
            ),
            "exercise.toml: checks: at least one check must not be hidden",
            id="every-check-hidden",
        ),
        pytest.param(
            manifest_edit('recipe = "kernel-lab"', 'recipe = "no-such-recipe"'),
            "exercise.toml: vm.recipe: no image recipe 'no-such-recipe' (known: kernel-lab)",
            id="unknown-recipe",
        ),
        pytest.param(
            manifest_edit("checker_timeout_seconds = 300", "checker_timeout_seconds = 86400"),
            "exercise.toml: grading.checker_timeout_seconds: "
            "Input should be less than or equal to 1200",
            id="timeout-too-long",
        ),
        pytest.param(
            manifest_edit("[deadline]\ndue_days = 7\nlate_days = 2\n", ""),
            "exercise.toml: deadline: Field required",
            id="missing-section",
        ),
        pytest.param(
            remove("hidden"),
            "exercise.toml: checks[7].hidden: a hidden check needs hidden tests, "
            "and there is no hidden/*.py",
            id="hidden-check-without-tests",
        ),
        pytest.param(
            manifest_edit("hidden = true", "hidden = false"),
            "hidden: holds tests, but exercise.toml declares no hidden check",
            id="hidden-tests-without-hidden-check",
        ),
        pytest.param(
            write("hidden/extra.py", "CHECKS = [('extra', 'Extra', 5)]\n"),
            "hidden/extra.py: CHECKS: declares 'extra', which exercise.toml does not",
            id="hidden-module-declares-unknown-check",
        ),
        pytest.param(
            write("hidden/notes.txt", "x"),
            "hidden/notes.txt: hidden/ holds only Python modules",
            id="hidden-non-python",
        ),
        pytest.param(
            manifest_edit('title = "Builds from your sources"', 'title = "Builds"'),
            "check/check.py: CHECKS: 'builds' is ('Builds from your sources', 20) here but "
            "('Builds', 20) in exercise.toml",
            id="checker-title-differs",
        ),
        pytest.param(
            write("check/check.py", "def main(:\n"),
            "check/check.py: line 1: not valid Python 3.11",
            id="checker-syntax-error",
        ),
        pytest.param(
            write("check/kernellab_check.py", "# mine\n"),
            "check/kernellab_check.py: reserved: the platform puts the checker library there",
            id="reserved-name",
        ),
        pytest.param(
            write(
                "wrong/left-loaded/expect.toml", 'description = "x"\nfails = ["reload_cycles"]\n'
            ),
            "wrong/left-loaded/expect.toml: fails[0]: 'reload_cycles' is hidden and only runs at "
            "Submit",
            id="wrong-answer-expects-hidden-check-at-check",
        ),
        pytest.param(
            write(
                "wrong/no-license/expect.toml",
                'description = "x"\nfails = ["not_left_loaded"]\n',
            ),
            "wrong/no-license/expect.toml: fails[0]: 'not_left_loaded' is check_only and never "
            "runs at Submit",
            id="wrong-answer-expects-check-only-check-at-submit",
        ),
        pytest.param(
            manifest_edit("hidden = false\ncheck_only = true", "hidden = true\ncheck_only = true"),
            "exercise.toml: checks: check 'not_left_loaded' is both hidden (only at Submit) "
            "and check_only (never at Submit)",
            id="hidden-and-check-only",
        ),
        pytest.param(
            write("wrong/left-loaded/expect.toml", 'fails = ["builds"]\nmodes = ["self"]\n'),
            "wrong/left-loaded/expect.toml: modes[0]: Input should be 'check' or 'submit'",
            id="wrong-answer-bad-mode",
        ),
        pytest.param(
            remove("wrong/missing-exit-message/files"),
            "wrong/missing-exit-message: has neither files/ nor apply.sh",
            id="wrong-answer-that-changes-nothing",
        ),
        pytest.param(
            remove("wrong/no-license/expect.toml"),
            "wrong/no-license/expect.toml: missing",
            id="wrong-answer-without-expectations",
        ),
        pytest.param(
            symlink("wrong/no-license/files/passwd", "/etc/passwd"),
            "wrong/no-license/files/passwd: is a symbolic link to the absolute path",
            id="absolute-symlink",
        ),
        pytest.param(
            symlink("solution/up", "../../.."),
            "solution/up: is a symbolic link to '../../..', outside the exercise folder",
            id="escaping-symlink",
        ),
        pytest.param(
            symlink("starter/hello/solution.c", "../../solution/files/root/hello/hello.c"),
            "starter/hello/solution.c: a symbolic link cannot be shipped in starter/",
            id="symlink-in-starter",
        ),
        pytest.param(
            write("starter/hello/my notes.txt", "x"),
            "starter/hello/my notes.txt: name must use only letters",
            id="unsafe-file-name",
        ),
        pytest.param(
            lambda folder: os.mkfifo(folder / "starter" / "pipe"),
            "starter/pipe: is not a regular file, folder or symbolic link",
            id="fifo",
        ),
    ],
)
def test_static_check(tmp_path: Path, change: Callable[[Path], None], expected: str) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    change(folder)
    text = reasons(problems_of(folder))
    assert f"{folder}/" + expected in text or f"{folder}: " + expected in text, text


def test_an_internal_symlink_outside_the_shipped_folders_is_fine(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    (folder / "wrong" / "no-license" / "files" / "root" / "hello" / "Makefile").unlink()
    (folder / "wrong" / "no-license" / "files" / "root" / "hello" / "Makefile").symlink_to(
        "../../../../../solution/files/root/hello/Makefile"
    )
    load_exercise(folder)


def test_the_folder_name_must_be_a_slug(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "Hello_Module")
    assert any("the folder name is the exercise's slug" in p.reason for p in problems_of(folder))


def test_file_sizes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_module, "MAX_FILE_BYTES", 1000)
    folder = copy_exercise(tmp_path, "hello-module")
    (folder / "starter" / "big.bin").write_bytes(b"x" * 1001)
    assert "starter/big.bin: is 1001 bytes; a file may have at most 1000" in reasons(
        problems_of(folder)
    )


def test_the_number_of_files_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_module, "MAX_ENTRIES", 10)
    folder = copy_exercise(tmp_path, "hello-module")
    assert "more than 10 files and folders" in reasons(problems_of(folder))


# -- content hash --------------------------------------------------------------------------


def test_content_hash_is_stable(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    first = load_exercise(folder).content_hash
    os.utime(folder / "check" / "check.py", (0, 0))  # times are not content
    assert load_exercise(folder).content_hash == first
    assert load_exercise(REAL_CATALOGUE / "hello-module").content_hash == first
    assert len(first) == 64


def test_content_hash_changes_with_what_grading_uses(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    before = load_exercise(folder).content_hash
    with (folder / "check" / "check.py").open("a") as f:
        f.write("\n# a change\n")
    after_check = load_exercise(folder).content_hash
    assert after_check != before
    (folder / "starter" / "hello" / "Makefile").chmod(0o755)
    after_mode = load_exercise(folder).content_hash
    assert after_mode != after_check
    edit(folder / "README.md", "Hello, kernel module", "Hello, module")
    assert load_exercise(folder).content_hash != after_mode


def test_content_hash_ignores_solution_and_wrong_answers(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    before = load_exercise(folder).content_hash
    edit(folder / "solution" / "files" / "root" / "hello" / "hello.c", "staff", "team")
    edit(folder / "wrong" / "no-license" / "expect.toml", "description = ", "description = 'x' #")
    (folder / "check" / "__pycache__").mkdir()
    (folder / "check" / "__pycache__" / "check.cpython-311.pyc").write_bytes(b"\0")
    assert load_exercise(folder).content_hash == before


def test_content_hash_covers_the_checker_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library is shipped in every bundle: a new library is a new version.
    folder = copy_exercise(tmp_path, "hello-module")
    before = load_exercise(folder).content_hash
    library = tmp_path / "kernellab_check.py"
    library.write_bytes(CHECKLIB.read_bytes() + b"\n# fixed\n")
    monkeypatch.setattr(manifest_module, "CHECKLIB", library)
    assert load_exercise(folder).content_hash != before


# -- the bundle ------------------------------------------------------------------------------


def test_bundle_is_deterministic_and_holds_what_grading_needs(tmp_path: Path) -> None:
    folder = copy_exercise(tmp_path, "hello-module")
    first = load_exercise(folder).bundle()
    for path in folder.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    again = load_exercise(folder)
    assert again.bundle() == first == again.bundle()

    assert gzip.GzipFile(fileobj=io.BytesIO(first)).read()  # a real gzip stream
    assert first[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {
            "check/check.py",
            "check/kernellab_check.py",
            "hidden/reload.py",
            "starter/hello/hello.c",
            "starter/hello/Makefile",
        } <= set(names)
        assert not [n for n in names if n.split("/")[0] not in ("check", "hidden", "starter")]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        library = tar.extractfile("check/kernellab_check.py")
        assert library is not None
        assert library.read() == CHECKLIB.read_bytes()


# -- start-up ------------------------------------------------------------------------------


def test_system_check_passes_on_the_real_catalogue() -> None:
    assert catalogue_check() == []
    require_valid_catalogue()


def test_system_check_refuses_a_broken_catalogue(tmp_path: Path) -> None:
    copy_exercise(tmp_path, "hello-module")
    (tmp_path / "hello-module" / "README.md").unlink()
    (tmp_path / "hello-module" / "check" / "check.py").unlink()
    with override_settings(EXERCISES_CATALOGUE_DIR=tmp_path):
        errors = catalogue_check()
        assert [e.id for e in errors] == ["exercises.E001", "exercises.E001"]
        readme = tmp_path / "hello-module" / "README.md"
        assert errors[0].msg == f"{readme}: missing: every exercise needs instructions"
        with pytest.raises(SystemCheckError, match=r"exercises\.E001"):
            call_command("check", stdout=StringIO(), stderr=StringIO())
        with pytest.raises(ImproperlyConfigured, match="The exercise catalogue is broken"):
            require_valid_catalogue()
