"""Per-exercise looks at a Submit's files before they reach the grading
guest. Each validator gets the files of one artifact and the manifest's spec
for it and returns what is wrong, as sentences for the student; any finding
refuses the Submit."""

from __future__ import annotations

from collections.abc import Sequence

from exercises.artifacts.files import ArtifactFile
from exercises.artifacts.validators import bpftrace, sysctl
from exercises.manifest import ArtifactSpec, BpftraceValidatorSpec, SysctlValidatorSpec


def validate(spec: ArtifactSpec, files: Sequence[ArtifactFile]) -> list[str]:
    validator = spec.validator
    if validator is None:
        return []
    if isinstance(validator, SysctlValidatorSpec):
        return sysctl.validate(files, validator)
    if isinstance(validator, BpftraceValidatorSpec):
        return bpftrace.validate(files, validator)
    raise AssertionError(f"no validator for {validator!r}")
