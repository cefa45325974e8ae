"""The exercise format: one schema for ``catalogue/<slug>/exercise.toml`` and
the static validation of a whole exercise folder.

An exercise folder holds::

    exercise.toml     the manifest (ExerciseManifest below)
    README.md         the instructions the student reads (Markdown)
    check/check.py    the checker, run in the guest (plus any modules it imports)
    hidden/*.py       optional: extra checks run only at Submit
    starter/          optional: files placed in the student's home at start
    solution/         optional: reference solution (files/ and/or apply.sh)
    wrong/<name>/     optional: wrong answers (expect.toml, files/ and/or apply.sh)

`load_exercise` checks everything that can be checked without a guest and
reports every problem of the folder at once; `load_catalogue` does so for
every folder. What passes becomes an `ExerciseSource`: the parsed manifest,
the instructions, a content hash and the bundle the grading guest receives.
"""

from __future__ import annotations

import ast
import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, get_args

from django.conf import settings
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exercises import checker_source
from exercises.choices import Difficulty
from exercises.folder import MAX_FILE_BYTES, BundleEntry, Entry, content_hash, make_bundle, walk
from vms.images.recipe import RECIPES_DIR, RecipeError, load_recipe, recipe_dir

# How a checker is run: Check (self-check in the student's own guest) or
# Submit (authoritative, in a clean guest, hidden checks included). The same
# values as exercises.models.AttemptKind.
Mode = Literal["check", "submit"]
MODES: tuple[Mode, ...] = get_args(Mode)

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX_LENGTH = 64  # Exercise.slug
CHECK_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
# Artifact paths travel through shell commands and tar in the guest: no
# spaces, quotes or glob characters.
GUEST_PATH = re.compile(r"^(?:/[A-Za-z0-9._@+-]+)+$")
# A file-name pattern of an artifact's include/programs lists.
GLOB_NAME = re.compile(r"^[A-Za-z0-9._@+*?\[\]-]+$")
# What one Submit may carry, all artifacts together (uncompressed).
ARTIFACT_MAX_BYTES = 4 << 20
# Guest paths a Submit must never try to collect: kernel pseudo file systems.
PSEUDO_FS_ROOTS = ("/proc", "/sys", "/dev")

MANIFEST_NAME = "exercise.toml"
README_NAME = "README.md"
EXPECT_NAME = "expect.toml"
MAX_MANIFEST_BYTES = 64 << 10
MAX_README_BYTES = 256 << 10
MAX_EXPECT_BYTES = 16 << 10
# check/, hidden/ and starter/ together: what every grading run ships.
MAX_BUNDLE_BYTES = 8 << 20

# What an exercise folder may contain at its top level, and as what.
TOP_LEVEL = {
    MANIFEST_NAME: "file",
    README_NAME: "file",
    "check": "dir",
    "hidden": "dir",
    "starter": "dir",
    "solution": "dir",
    "wrong": "dir",
}
BUNDLED_DIRS = ("check", "hidden", "starter")
VARIANT_ENTRIES = {"files": "dir", "apply.sh": "file"}  # solution/ and wrong/<name>/
CHECKLIB = Path(__file__).resolve().parent / "checklib" / "kernellab_check.py"
CHECKLIB_ARCNAME = "check/kernellab_check.py"
# Names in check/ that the platform fills in itself.
RESERVED_IN_CHECK = {"kernellab_check.py": "the checker library", "hidden": "hidden/ at Submit"}

_T = TypeVar("_T")


# -- problems ------------------------------------------------------------------------


class Problem(NamedTuple):
    path: str
    field: str
    reason: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.path}: {self.field}: {self.reason}"
        return f"{self.path}: {self.reason}"


class CatalogueError(Exception):
    """The catalogue (or one exercise folder) is broken: every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def summary(self, root: Path) -> str:
        """'5 problems in 2 exercise folders of <root>'"""
        folders = set()
        for problem in self.problems:
            path = Path(problem.path)
            if path.is_relative_to(root) and path != root:
                folders.add(path.relative_to(root).parts[0])
        count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        if not folders:
            return f"{count} in {root}"
        return (
            f"{count} in {len(folders)} exercise folder{'s' if len(folders) != 1 else ''} of {root}"
        )


# -- the schema ----------------------------------------------------------------------


class _Strict(BaseModel):
    # strict: TOML has real types, so "10" where a number belongs is a mistake.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _guest_path(value: str) -> str:
    if not value.startswith("/"):
        raise PydanticCustomError("guest_path", "must be an absolute guest path (start with /)")
    if value == "/":
        raise PydanticCustomError("guest_path", "cannot be the whole file system")
    if posixpath.normpath(value) != value or value.startswith("//") or value.endswith("/"):
        raise PydanticCustomError(
            "guest_path",
            "must be normalised (no '.', '..', '//' or trailing '/'): {normal}",
            {"normal": posixpath.normpath(value)},
        )
    if not GUEST_PATH.match(value):
        raise PydanticCustomError(
            "guest_path", "may only use letters, digits and . _ @ + - between the slashes"
        )
    if any(value == root or value.startswith(root + "/") for root in PSEUDO_FS_ROOTS):
        raise PydanticCustomError(
            "guest_path",
            "is on a kernel pseudo file system ({roots}), which cannot be copied",
            {"roots": ", ".join(PSEUDO_FS_ROOTS)},
        )
    return value


GuestPath = Annotated[str, Field(max_length=255), AfterValidator(_guest_path)]
CheckId = Annotated[str, Field(pattern=CHECK_ID_PATTERN)]


class CheckSpec(_Strict):
    """One check. ``hidden`` checks run only at Submit, unseen before.
    ``check_only`` checks run only on Check, in the student's own guest: they
    judge a state the clean grading guest never has (a module left loaded),
    so at Submit they would be free points."""

    id: CheckId
    title: Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
    points: int = Field(gt=0, le=1000)
    hidden: bool = False
    check_only: bool = False

    def runs_in(self, mode: Mode) -> bool:
        return not self.check_only if mode == "submit" else not self.hidden


class VMSpec(_Strict):
    recipe: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    memory_mib: int = Field(ge=256, le=8192)
    vcpus: int = Field(ge=1, le=8)


def _name_pattern(value: str) -> str:
    if not value or "/" in value or len(value) > 64 or not GLOB_NAME.match(value):
        raise PydanticCustomError(
            "name_pattern",
            "must be a file-name pattern (letters, digits, . _ @ + - * ? and [ ]), no '/'",
        )
    return value


NamePattern = Annotated[str, AfterValidator(_name_pattern)]
SysctlKeyPattern = Annotated[str, Field(pattern=r"^[a-z0-9_*?]+(?:[./][a-z0-9_*?-]+)*$")]


class SysctlValidatorSpec(_Strict):
    """Every line of the *.conf files is a `key = value` assignment of a key
    matching one of ``keys`` (dotted sysctl names, `*` as a wildcard): a file
    that sets kernel.modprobe or kernel.core_pattern never reaches the
    grading guest, whose boot would apply it as root."""

    kind: Literal["sysctl"]
    keys: list[SysctlKeyPattern] = Field(min_length=1, max_length=64)


class BpftraceValidatorSpec(_Strict):
    """bpftrace scripts that the checker runs as root (exercises/artifacts/
    validators/bpftrace.py): only builtins that compute, count or print,
    kernel probes only, no preprocessor lines or type definitions."""

    kind: Literal["bpftrace"]


ValidatorSpec = Annotated[SysctlValidatorSpec | BpftraceValidatorSpec, Field(discriminator="kind")]


class ArtifactSpec(_Strict):
    """A path Submit collects from the student's guest and grades as data:
    regular files and folders only, owned by root, mode 0644 (0755 for the
    names ``programs`` matches, and for folders), capped in size and count,
    looked at by the ``validator`` before it reaches the grading guest."""

    path: GuestPath
    # File-name patterns of what is collected below ``path`` (all files by
    # default): sources, not build products.
    include: list[NamePattern] = Field(default_factory=lambda: ["*"], min_length=1, max_length=32)
    programs: list[NamePattern] = Field(default_factory=list, max_length=32)
    max_bytes: int = Field(default=1 << 20, ge=1, le=ARTIFACT_MAX_BYTES)
    max_files: int = Field(default=200, ge=1, le=2000)
    validator: ValidatorSpec | None = None


def _artifact_from_path(value: Any) -> Any:
    """`artifacts = ["/root/hello"]` (the first format, still in stored
    versions) is `[[grading.artifacts]] path = "/root/hello"`."""
    if isinstance(value, list):
        return [{"path": item} if isinstance(item, str) else item for item in value]
    return value


class GradingSpec(_Strict):
    checker_timeout_seconds: int = Field(ge=10, le=1200)
    reboot_before_submit: bool = False
    artifacts: Annotated[
        list[ArtifactSpec], BeforeValidator(_artifact_from_path), Field(min_length=1, max_length=32)
    ]
    output_limit_bytes: int = Field(default=1 << 20, ge=4096, le=16 << 20)

    @field_validator("artifacts")
    @classmethod
    def _distinct_artifacts(cls, value: list[ArtifactSpec]) -> list[ArtifactSpec]:
        paths = [artifact.path for artifact in value]
        for i, path in enumerate(paths):
            for other in paths[:i]:
                if path == other:
                    raise PydanticCustomError("artifacts", "{path} is listed twice", {"path": path})
                outer, inner = sorted((path, other), key=len)
                if inner.startswith(outer + "/"):
                    raise PydanticCustomError(
                        "artifacts",
                        "{inner} is inside {outer}, which is already collected",
                        {"inner": inner, "outer": outer},
                    )
        total = sum(artifact.max_bytes for artifact in value)
        if total > ARTIFACT_MAX_BYTES:
            raise PydanticCustomError(
                "artifacts",
                "the artifacts' max_bytes add up to {total}; at most {cap} can be graded",
                {"total": total, "cap": ARTIFACT_MAX_BYTES},
            )
        return value

    def artifact_paths(self) -> list[str]:
        return [artifact.path for artifact in self.artifacts]


class DeadlineSpec(_Strict):
    due_days: int = Field(ge=1, le=365)
    late_days: int = Field(ge=0, le=365)


class ExerciseManifest(_Strict):
    """exercise.toml. Fields added later must have defaults: versions already
    stored (ExerciseVersion.manifest) are validated with this schema again."""

    title: str = Field(min_length=1, max_length=200, pattern=r"\S")
    topic: str = Field(min_length=1, max_length=64, pattern=r"\S")
    difficulty: Annotated[Difficulty, Field(strict=False)]
    summary: str = Field(min_length=1, max_length=300, pattern=r"\S")
    time_limit_minutes: int = Field(ge=5, le=24 * 60)
    vm: VMSpec
    grading: GradingSpec
    deadline: DeadlineSpec
    checks: list[CheckSpec] = Field(min_length=1, max_length=100)

    @field_validator("checks")
    @classmethod
    def _checks_make_sense(cls, value: list[CheckSpec]) -> list[CheckSpec]:
        first: dict[str, int] = {}
        for index, check in enumerate(value):
            if check.id in first:
                raise PydanticCustomError(
                    "duplicate_check",
                    "check id '{id}' is used twice (checks[{a}] and checks[{b}])",
                    {"id": check.id, "a": first[check.id], "b": index},
                )
            first[check.id] = index
        if all(check.hidden for check in value):
            raise PydanticCustomError(
                "no_visible_check", "at least one check must not be hidden: Check runs only those"
            )
        if all(check.check_only for check in value):
            raise PydanticCustomError(
                "no_submit_check",
                "at least one check must not be check_only: Submit runs only those",
            )
        for check in value:
            if check.hidden and check.check_only:
                raise PydanticCustomError(
                    "hidden_check_only",
                    "check '{id}' is both hidden (only at Submit) and check_only (never at Submit)",
                    {"id": check.id},
                )
        return value

    @property
    def total_points(self) -> int:
        """What a submission is out of: the grade."""
        return self.max_score("submit")

    def checks_for(self, mode: Mode) -> list[CheckSpec]:
        """The checks a run in this mode reports, in manifest order: hidden
        checks only run at Submit, check_only checks only on Check."""
        return [c for c in self.checks if c.runs_in(mode)]

    def max_score(self, mode: Mode) -> int:
        return sum(check.points for check in self.checks_for(mode))

    def check_ids(self) -> list[str]:
        return [check.id for check in self.checks]


class WrongAnswer(_Strict):
    """wrong/<name>/expect.toml: a wrong answer and the checks it must fail."""

    description: str = Field(min_length=1, max_length=1000, pattern=r"\S")
    fails: list[CheckId] = Field(default_factory=list)
    modes: list[Mode] = Field(default_factory=lambda: list(MODES), min_length=1)
    # A Submit of this answer is refused before grading (its files break the
    # exercise's artifact rules), with a message containing this text.
    refused: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _fails_or_refused(self) -> WrongAnswer:
        if not self.fails and not self.refused:
            raise PydanticCustomError(
                "nothing_expected",
                "list the checks it must fail (fails), or the refusal it gets (refused)",
            )
        if self.refused and self.modes != ["submit"]:
            raise PydanticCustomError(
                "refused_mode", 'only a Submit can be refused: set modes = ["submit"]'
            )
        return self

    @field_validator("fails", "modes")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("repeated", "lists an entry twice")
        return value


# -- a validated exercise ----------------------------------------------------------------


@dataclass(frozen=True)
class ExerciseSource:
    """An exercise folder that passed validation, as read at that moment."""

    slug: str
    folder: Path
    manifest: ExerciseManifest
    instructions_md: str
    content_hash: str
    # check/, hidden/, starter/ and the checker library, as read and hashed.
    payload: tuple[BundleEntry, ...] = field(repr=False, compare=False)

    def bundle(self) -> bytes:
        """The tar.gz a grading run ships: check/ (with kernellab_check.py
        added), hidden/ and starter/. Only hidden/ must stay out of a student's
        guest until Submit; the checker library expects it at check/hidden/."""
        return make_bundle(self.payload)


def load_exercise(folder: Path) -> ExerciseSource:
    """Validate one exercise folder; raise CatalogueError with all its problems."""
    source, problems = _Inspection(folder).run()
    if problems or source is None:
        raise CatalogueError(problems)
    return source


def load_catalogue(root: Path | None = None) -> list[ExerciseSource]:
    """Validate every exercise folder under ``root`` (EXERCISES_CATALOGUE_DIR by
    default), sorted by slug; raise one CatalogueError with every problem of
    every folder."""
    root = Path(settings.EXERCISES_CATALOGUE_DIR) if root is None else root
    if not root.is_dir():
        raise CatalogueError([Problem(str(root), "", "no such folder (EXERCISES_CATALOGUE_DIR)")])
    sources: list[ExerciseSource] = []
    problems: list[Problem] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or child.name == "__pycache__" or not child.is_dir():
            continue  # notes or tooling beside the exercises
        source, found = _Inspection(child).run()
        problems += found
        if source is not None:
            sources.append(source)
    if not sources and not problems:
        problems.append(Problem(str(root), "", "holds no exercise folder"))
    if problems:
        raise CatalogueError(problems)
    return sources


# -- the inspection of one folder ------------------------------------------------------


def _names(allowed: dict[str, str]) -> str:
    return ", ".join(f"{name}/" if kind == "dir" else name for name, kind in allowed.items())


def _kind_name(kind: str) -> str:
    return "folder" if kind == "dir" else "file"


class _Inspection:
    """Everything wrong with one exercise folder, found in one pass."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problems: list[Problem] = []
        self.entries: dict[PurePosixPath, Entry] = {}
        self.manifest_text = ""

    def add(self, rel: str | PurePosixPath, field: str, reason: str) -> None:
        path = self.folder / rel if str(rel) not in ("", ".") else self.folder
        self.problems.append(Problem(str(path), field, reason))

    def kind(self, rel: str) -> str | None:
        entry = self.entries.get(PurePosixPath(rel))
        return entry.kind if entry else None

    def under(self, top: str, *, depth: int | None = None) -> list[Entry]:
        """Entries inside ``top`` (a relative folder), at that depth below it if given."""
        top_parts = PurePosixPath(top).parts
        return [
            entry
            for entry in self.entries.values()
            if entry.rel.parts[: len(top_parts)] == top_parts
            and len(entry.rel.parts) > len(top_parts)
            and (depth is None or len(entry.rel.parts) == len(top_parts) + depth)
        ]

    def read_text(self, rel: str | PurePosixPath, limit: int) -> str | None:
        try:
            with (self.folder / rel).open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            self.add(rel, "", f"cannot be read: {exc.strerror}")
            return None
        if len(data) > limit:
            self.add(rel, "", f"is larger than {limit} bytes")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.add(rel, "", f"is not UTF-8 text (byte {exc.start})")
            return None

    def parse_toml(self, rel: str, text: str, validate: Callable[[Any], _T]) -> _T | None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            self.add(rel, "", f"not valid TOML: {exc}")
            return None
        try:
            return validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                self.add(rel, _field_name(error["loc"]), error["msg"])
            return None

    # -- the steps --------------------------------------------------------------------

    def run(self) -> tuple[ExerciseSource | None, list[Problem]]:
        slug = self.folder.name
        if not SLUG.match(slug) or len(slug) > SLUG_MAX_LENGTH:
            self.add(
                "",
                "",
                "the folder name is the exercise's slug: lowercase letters, "
                f"digits and single hyphens, at most {SLUG_MAX_LENGTH} characters",
            )
        if not self.folder.is_dir():
            self.add("", "", "is not a folder")
            return None, self.problems
        entries, issues = walk(self.folder)
        self.entries = {entry.rel: entry for entry in entries}
        for issue in issues:
            self.add(issue.rel, "", issue.reason)
        self.check_layout()
        manifest = self.load_manifest()
        instructions = self.load_readme()
        modules = self.parse_checker_python()
        answers = self.load_wrong_answers()
        self.check_variant("solution", VARIANT_ENTRIES)
        if manifest is not None:
            self.check_recipe(manifest)
            self.check_hidden(manifest, modules)
            self.check_visible(manifest, modules)
            for name, answer in answers.items():
                self.check_wrong_answer(manifest, name, answer)
        payload = self.collect_payload()
        if self.problems or manifest is None or instructions is None:
            return None, self.problems
        hashed = [
            *payload,
            BundleEntry(MANIFEST_NAME, self.manifest_text.encode()),
            BundleEntry(README_NAME, instructions.encode()),
        ]
        source = ExerciseSource(
            slug=slug,
            folder=self.folder,
            manifest=manifest,
            instructions_md=instructions,
            content_hash=content_hash(hashed),
            payload=tuple(payload),
        )
        return source, []

    def check_layout(self) -> None:
        for entry in self.entries.values():
            top = entry.rel.parts[0]
            if len(entry.rel.parts) == 1:
                wanted = TOP_LEVEL.get(top)
                if wanted is None:
                    self.add(entry.rel, "", f"unexpected; an exercise holds {_names(TOP_LEVEL)}")
                elif entry.kind != wanted:
                    self.add(
                        entry.rel,
                        "",
                        f"must be a {_kind_name(wanted)}, not a "
                        + ("symbolic link" if entry.kind == "symlink" else _kind_name(entry.kind)),
                    )
            elif top in BUNDLED_DIRS and entry.kind == "symlink":
                self.add(
                    entry.rel,
                    "",
                    f"a symbolic link cannot be shipped in {top}/ (it is "
                    "copied into the guest): put the file itself here",
                )
        for rel, what in (
            (MANIFEST_NAME, "a manifest"),
            (README_NAME, "instructions"),
            ("check/check.py", "a checker"),
        ):
            if self.kind(rel) is None:
                self.add(rel, "", f"missing: every exercise needs {what}")
        for name, what in RESERVED_IN_CHECK.items():
            if self.kind(f"check/{name}") is not None:
                self.add(f"check/{name}", "", f"reserved: the platform puts {what} there")

    def load_manifest(self) -> ExerciseManifest | None:
        if self.kind(MANIFEST_NAME) != "file":
            return None
        text = self.read_text(MANIFEST_NAME, MAX_MANIFEST_BYTES)
        if text is None:
            return None
        self.manifest_text = text
        return self.parse_toml(MANIFEST_NAME, text, ExerciseManifest.model_validate)

    def load_readme(self) -> str | None:
        if self.kind(README_NAME) != "file":
            return None
        text = self.read_text(README_NAME, MAX_README_BYTES)
        if text is not None and not text.strip():
            self.add(README_NAME, "", "is empty: write the instructions the student reads")
            return None
        return text

    def parse_checker_python(self) -> dict[str, ast.Module]:
        """Every .py shipped to the guest, parsed as the guest's Python would."""
        modules: dict[str, ast.Module] = {}
        for entry in [*self.under("check"), *self.under("hidden")]:
            if entry.kind != "file" or entry.rel.suffix != ".py":
                continue
            text = self.read_text(entry.rel, MAX_FILE_BYTES)
            if text is None:
                continue
            parsed = checker_source.parse_python(text, str(entry.rel))
            if isinstance(parsed, checker_source.Finding):
                self.add(entry.rel, parsed.field, parsed.reason)
            else:
                modules[str(entry.rel)] = parsed
        for entry in self.under("hidden"):
            if len(entry.rel.parts) != 2 or entry.kind != "file" or entry.rel.suffix != ".py":
                self.add(entry.rel, "", "hidden/ holds only Python modules (hidden/*.py)")
        return modules

    def load_wrong_answers(self) -> dict[str, WrongAnswer]:
        answers: dict[str, WrongAnswer] = {}
        for entry in self.under("wrong", depth=1):
            name = entry.rel.name
            if entry.kind != "dir":
                self.add(entry.rel, "", "wrong/ holds one folder per wrong answer")
                continue
            if not SLUG.match(name):
                self.add(entry.rel, "", "a wrong answer's folder name must be a slug")
            self.check_variant(str(entry.rel), {**VARIANT_ENTRIES, EXPECT_NAME: "file"})
            rel = f"{entry.rel}/{EXPECT_NAME}"
            if self.kind(rel) != "file":
                self.add(rel, "", "missing: it lists the checks this wrong answer must fail")
                continue
            text = self.read_text(rel, MAX_EXPECT_BYTES)
            answer = (
                None if text is None else self.parse_toml(rel, text, WrongAnswer.model_validate)
            )
            if answer is not None:
                answers[name] = answer
        return answers

    def check_variant(self, top: str, allowed: dict[str, str]) -> None:
        """solution/ or wrong/<name>/: files/ is copied onto the guest's /,
        then apply.sh runs. One of them must be there."""
        if self.kind(top) != "dir":
            return
        inside = self.under(top, depth=1)
        for entry in inside:
            wanted = allowed.get(entry.rel.name)
            if wanted is None:
                self.add(entry.rel, "", f"unexpected; allowed here: {_names(allowed)}")
            elif entry.kind != wanted:
                self.add(entry.rel, "", f"must be a {_kind_name(wanted)}")
        if not any(entry.rel.name in VARIANT_ENTRIES for entry in inside):
            self.add(top, "", "has neither files/ nor apply.sh, so it changes nothing")

    def check_recipe(self, manifest: ExerciseManifest) -> None:
        name = manifest.vm.recipe
        if not (recipe_dir(name) / "recipe.toml").is_file():
            known = ", ".join(sorted(p.parent.name for p in RECIPES_DIR.glob("*/recipe.toml")))
            self.add(MANIFEST_NAME, "vm.recipe", f"no image recipe {name!r} (known: {known})")
            return
        try:
            load_recipe(recipe_dir(name))
        except RecipeError as exc:
            self.add(MANIFEST_NAME, "vm.recipe", f"the image recipe is broken: {exc}")

    def check_visible(self, manifest: ExerciseManifest, modules: dict[str, ast.Module]) -> None:
        """check.py's CHECKS, if it has one, lists exactly the visible checks."""
        tree = modules.get("check/check.py")
        declared = None if tree is None else checker_source.declared_checks(tree)
        if isinstance(declared, checker_source.Finding):
            self.add("check/check.py", declared.field, declared.reason)
            return
        if declared is None:
            return
        specs = {check.id: check for check in manifest.checks}
        for finding in checker_source.compare_declared(declared, specs, hidden=False):
            self.add("check/check.py", finding.field, finding.reason)
        visible = {check.id for check in manifest.checks if not check.hidden}
        for check_id in sorted(visible - {check_id for check_id, _, _ in declared}):
            self.add("check/check.py", "CHECKS", f"does not declare {check_id!r}")

    def check_hidden(self, manifest: ExerciseManifest, modules: dict[str, ast.Module]) -> None:
        """Hidden checks exist exactly when hidden/*.py does, and those modules
        declare them (CHECKS) and run them (run_checks)."""
        hidden_modules = {
            rel: tree for rel, tree in sorted(modules.items()) if rel.startswith("hidden/")
        }
        has_tests = any(e.rel.suffix == ".py" for e in self.under("hidden", depth=1))
        hidden = [index for index, check in enumerate(manifest.checks) if check.hidden]
        if hidden and not has_tests:
            for index in hidden:
                self.add(
                    MANIFEST_NAME,
                    f"checks[{index}].hidden",
                    "a hidden check needs hidden tests, and there is no hidden/*.py",
                )
            return
        if has_tests and not hidden:
            self.add("hidden", "", "holds tests, but exercise.toml declares no hidden check")
            return
        specs = {check.id: check for check in manifest.checks}
        declared_by: dict[str, str] = {}
        complete = len(hidden_modules) == len(
            [entry for entry in self.under("hidden", depth=1) if entry.rel.suffix == ".py"]
        )
        for rel, tree in hidden_modules.items():
            if not checker_source.defines_function(tree, "run_checks"):
                self.add(
                    rel,
                    "run_checks",
                    "missing: a hidden module defines run_checks(report, context)",
                )
            declared = checker_source.declared_checks(tree)
            if declared is None:
                self.add(
                    rel,
                    "CHECKS",
                    "missing: a hidden module declares CHECKS = [(id, title, points), ...]",
                )
                complete = False
                continue
            if isinstance(declared, checker_source.Finding):
                self.add(rel, declared.field, declared.reason)
                complete = False
                continue
            for finding in checker_source.compare_declared(declared, specs, hidden=True):
                self.add(rel, finding.field, finding.reason)
            for check_id, _title, _points in declared:
                if check_id in declared_by:
                    self.add(
                        rel, "CHECKS", f"{check_id!r} is declared by {declared_by[check_id]} too"
                    )
                declared_by.setdefault(check_id, rel)
        if complete:  # else the broken module may be the one declaring it
            for index in hidden:
                check_id = manifest.checks[index].id
                if check_id not in declared_by:
                    self.add(
                        MANIFEST_NAME,
                        f"checks[{index}]",
                        f"no hidden/*.py declares hidden check {check_id!r}",
                    )

    def check_wrong_answer(
        self, manifest: ExerciseManifest, name: str, answer: WrongAnswer
    ) -> None:
        rel = f"wrong/{name}/{EXPECT_NAME}"
        specs = {check.id: check for check in manifest.checks}
        for index, check_id in enumerate(answer.fails):
            spec = specs.get(check_id)
            if spec is None:
                self.add(rel, f"fails[{index}]", f"no check {check_id!r} in exercise.toml")
            elif spec.hidden and "check" in answer.modes:
                self.add(
                    rel,
                    f"fails[{index}]",
                    f'{check_id!r} is hidden and only runs at Submit: add modes = ["submit"]',
                )
            elif spec.check_only and "submit" in answer.modes:
                self.add(
                    rel,
                    f"fails[{index}]",
                    f'{check_id!r} is check_only and never runs at Submit: add modes = ["check"]',
                )

    def collect_payload(self) -> list[BundleEntry]:
        """check/, hidden/ and starter/ as shipped, plus the checker library.
        Read only when everything else is in order."""
        shipped = [
            entry
            for entry in self.entries.values()
            if entry.rel.parts[0] in BUNDLED_DIRS and entry.kind in ("file", "dir")
        ]
        total = sum(entry.size for entry in shipped)
        if total > MAX_BUNDLE_BYTES:
            self.add(
                "",
                "",
                f"check/, hidden/ and starter/ hold {total} bytes; at most "
                f"{MAX_BUNDLE_BYTES} can be shipped to a guest",
            )
        if self.problems:
            return []
        payload: list[BundleEntry] = []
        for entry in shipped:
            if entry.kind == "dir":
                payload.append(BundleEntry(str(entry.rel), is_dir=True))
                continue
            try:
                data = (self.folder / entry.rel).read_bytes()
            except OSError as exc:
                self.add(entry.rel, "", f"cannot be read: {exc.strerror}")
                continue
            payload.append(BundleEntry(str(entry.rel), data, entry.executable))
        try:
            payload.append(BundleEntry(CHECKLIB_ARCNAME, CHECKLIB.read_bytes()))
        except OSError as exc:
            self.problems.append(Problem(str(CHECKLIB), "", f"cannot be read: {exc.strerror}"))
        return payload


def _field_name(loc: tuple[int | str, ...]) -> str:
    """('checks', 2, 'points') -> 'checks[2].points'"""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name
