"""What an exercise's checker files declare, read statically (never imported
or run on the platform).

A checker built on the checker library declares its checks as a module-level
literal, ``CHECKS = [(id, title, points), ...]``: check/check.py by convention,
every hidden/*.py necessarily (the library reads it to know what a hidden
module will report), and a hidden module also defines ``run_checks(report,
context)``. Comparing those lists with exercise.toml catches a renamed check
or changed points before a student's grading does.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exercises.manifest import CheckSpec

GUEST_PYTHON = (3, 11)  # Debian bookworm's python3 runs the checkers

Declared = list[tuple[str, str, int]]


@dataclass(frozen=True)
class Finding:
    field: str
    reason: str


def parse_python(text: str, filename: str) -> ast.Module | Finding:
    """The module's syntax tree, or why the guest's Python would reject it."""
    try:
        return ast.parse(text, filename=filename, feature_version=GUEST_PYTHON)
    except SyntaxError as exc:
        return Finding(f"line {exc.lineno}", f"not valid Python 3.11: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return Finding("", f"cannot be parsed: {type(exc).__name__}")


def declared_checks(tree: ast.Module) -> Declared | Finding | None:
    """The module-level CHECKS literal; None if there is none."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "CHECKS" for t in targets):
            continue
        try:
            checks = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return Finding("CHECKS", "must be a literal list of (id, title, points) tuples")
        if not isinstance(checks, list | tuple) or not all(
            isinstance(item, tuple)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], str)
            and type(item[2]) is int
            for item in checks
        ):
            return Finding("CHECKS", "must be a list of (id, title, points) tuples")
        return [(check_id, title, points) for check_id, title, points in checks]
    return None


def defines_function(tree: ast.Module, name: str) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


def compare_declared(
    declared: Declared, specs: Mapping[str, CheckSpec], *, hidden: bool
) -> list[Finding]:
    """Each declared check exists in exercise.toml, on the right side (hidden
    or not), with the same title and points."""
    findings = []
    for check_id, title, points in declared:
        spec = specs.get(check_id)
        if spec is None:
            findings.append(
                Finding("CHECKS", f"declares {check_id!r}, which exercise.toml does not")
            )
        elif spec.hidden != hidden:
            side = "hidden, so it belongs in hidden/*.py" if spec.hidden else "not hidden"
            findings.append(Finding("CHECKS", f"{check_id!r} is {side} in exercise.toml"))
        elif (title, points) != (spec.title, spec.points):
            findings.append(
                Finding(
                    "CHECKS",
                    f"{check_id!r} is ({title!r}, {points}) here but "
                    f"({spec.title!r}, {spec.points}) in exercise.toml",
                )
            )
    return findings
