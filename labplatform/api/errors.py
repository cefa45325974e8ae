"""One error idiom for the API: every refusal is an RFC 9457 problem
(application/problem+json) with a stable ``code``, a human ``detail`` and
the HTTP status; the domain's own refusals (AttemptRefused, LabError,
ArtifactsRefused, Http404) are mapped here, in one place."""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from exercises.artifacts.archive import ArtifactsRefused
from exercises.errors import AttemptRefused
from vms.errors import LabError

PROBLEM_CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Server error",
}


class ApiError(Exception):
    """A refusal with its HTTP status, a stable machine code and a sentence."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def problem_type(code: str) -> str:
    return f"urn:kernellab:problem:{code}"


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> HttpResponse:
    body = {
        "type": problem_type(code),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    response = HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "The request is not valid."


def problem_for(exc: Exception) -> HttpResponse:
    """The problem response for any exception an endpoint can raise."""
    if isinstance(exc, ApiError):
        return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers)
    if isinstance(exc, AttemptRefused):
        status = 422 if exc.code == AttemptRefused.FILES_REFUSED else 409
        return problem_response(status, exc.code, exc.message)
    if isinstance(exc, LabError):
        return problem_response(409, exc.code, exc.message)
    if isinstance(exc, ArtifactsRefused):
        return problem_response(422, AttemptRefused.FILES_REFUSED, exc.message)
    if isinstance(exc, Http404):
        return problem_response(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, ValidationError):
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors
        ]
        return problem_response(422, "validation_error", _validation_detail(errors), errors=errors)
    if isinstance(exc, AuthenticationError):
        return problem_response(
            401,
            "not_authenticated",
            "Send a valid API token: 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="kernellab"'},
        )
    if isinstance(exc, Throttled):  # ninja adds Retry-After to this response
        return problem_response(
            429, "rate_limited", "Too many requests with this token; retry after a pause."
        )
    if isinstance(exc, HttpError):
        code = {405: "method_not_allowed", 400: "bad_request"}.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc))
    raise exc


HANDLED: tuple[type[Exception], ...] = (
    ApiError,
    AttemptRefused,
    LabError,
    ArtifactsRefused,
    Http404,
    ValidationError,
    AuthenticationError,
    Throttled,
    HttpError,
)


def install_handlers(api: NinjaAPI) -> None:
    """Map every exception an endpoint can raise to a problem response."""

    def handler(request: HttpRequest, exc: Any) -> HttpResponse:
        return problem_for(exc)

    for exc_class in HANDLED:
        api.add_exception_handler(exc_class, handler)
