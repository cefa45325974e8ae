"""A Submit's uploaded tar.gz, from either request body the API takes: the
archive itself (Content-Type: application/gzip) or the ``archive`` field of
a multipart/form-data form. Both hand the same bytes to
exercises.services.attempt_submit_files, the one trust boundary; this module
only answers "which bytes", under API_UPLOAD_MAX_BYTES."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

from labplatform.api.errors import ApiError

FIELD = "archive"
MULTIPART = "multipart/form-data"
GZIP = ("application/gzip", "application/x-gzip")

_BINARY = {"type": "string", "format": "binary"}
# The operation's requestBody in the OpenAPI document (the view reads the
# body itself, so ninja has no parameter to describe it from).
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/gzip": {"schema": _BINARY},
        "application/x-gzip": {"schema": _BINARY},
        MULTIPART: {
            "schema": {
                "type": "object",
                "properties": {FIELD: {**_BINARY, "description": "the tar.gz"}},
                "required": [FIELD],
            }
        },
    },
}


def _too_large(size: str) -> ApiError:
    return ApiError(
        413,
        "upload_too_large",
        f"The archive is {size} bytes; the limit is {settings.API_UPLOAD_MAX_BYTES} bytes.",
    )


def _raw_body(request: HttpRequest) -> bytes:
    limit = settings.API_UPLOAD_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise _too_large(str(declared))  # refused before reading it
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(f"more than {limit}")
    return raw


def _form_field(request: HttpRequest) -> bytes:
    try:
        archive = request.FILES.get(FIELD)
    except RequestDataTooBig as exc:
        raise _too_large("with its form fields, too many") from exc
    except (MultiPartParserError, TooManyFieldsSent, TooManyFilesSent) as exc:
        raise ApiError(
            422, "validation_error", f"The multipart body cannot be read: {exc}"
        ) from exc
    if archive is None:
        raise ApiError(
            422, "validation_error", f"{FIELD}: the multipart form has no '{FIELD}' file."
        )
    if archive.size is not None and archive.size > settings.API_UPLOAD_MAX_BYTES:
        raise _too_large(str(archive.size))
    data = archive.read(settings.API_UPLOAD_MAX_BYTES + 1)
    if len(data) > settings.API_UPLOAD_MAX_BYTES:
        raise _too_large(f"more than {settings.API_UPLOAD_MAX_BYTES}")
    return data


def uploaded_archive(request: HttpRequest) -> bytes:
    """The uploaded archive's bytes, whichever way it was sent: 413 over
    the limit, 415 for another Content-Type."""
    content_type = (request.content_type or "").lower()
    if content_type in GZIP:
        return _raw_body(request)
    if content_type == MULTIPART:
        return _form_field(request)
    sent = content_type or "no Content-Type"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"Send the tar.gz as the body (Content-Type: application/gzip) or as the "
        f"'{FIELD}' file of a multipart/form-data form, not {sent}.",
    )
