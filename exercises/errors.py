"""Why a Check or a Submit cannot start: a code for the API and the page's
script, and a sentence for the student."""

from __future__ import annotations


class AttemptRefused(Exception):
    # The codes, for callers that branch on them.
    NOT_READY = "not_ready"  # the exercise has no version to grade with, or was withdrawn
    NOT_OPEN = "not_open"  # before the assignment opens
    CLOSED = "closed"  # after its hard close
    ATTEMPT_OPEN = "attempt_open"  # the previous Check or Submit is still being graded
    TOO_MANY_GRADINGS = "too_many_gradings"  # GRADING_MAX_PER_STUDENT, across exercises
    NO_VM = "no_vm"  # the student's lab VM is not running (or did not answer)
    FILES_REFUSED = "files_refused"  # a Submit's files break the exercise's artifact rules
    NOT_REGRADABLE = "not_regradable"  # only a Submit with stored files can be graded again

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
