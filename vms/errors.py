"""Errors a user can hit when asking for a VM: a code for the API and a
sentence for the page."""

from __future__ import annotations


class LabError(Exception):
    code = "lab_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QuotaExceeded(LabError):
    code = "quota_exceeded"


class NoCapacity(LabError):
    code = "no_capacity"


class InvalidState(LabError):
    code = "invalid_state"


class AssignmentClosed(LabError):
    code = "assignment_closed"


class FileRefused(LabError):
    """A file upload or download that cannot be done (too large, bad path,
    the guest said no); the message says which."""

    code = "file_refused"


class FileTooLarge(FileRefused):
    code = "file_too_large"
