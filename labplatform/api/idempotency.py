"""Idempotency-Key on creates (the IETF httpapi draft's semantics).

A POST under /api/ with an Idempotency-Key is recorded per token before it
runs: a retry with the same key and the same request gets the first answer
again (Idempotent-Replayed: true) and creates nothing; the same key with
another request is refused (422 idempotency_key_reused); a retry while the
first is still running is refused (409 idempotency_key_in_use). Only
successful answers are kept: a refused request created nothing, so running
it again is safe. Records are kept API_IDEMPOTENCY_HOURS."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from labplatform.api.errors import problem_response
from labplatform.api.models import ApiToken, IdempotencyRecord
from labplatform.api.services import token_hash

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


# Multipart framing around an upload of API_UPLOAD_MAX_BYTES.
BODY_OVERHEAD_BYTES = 64 * 1024


def _body(request: HttpRequest) -> bytes:
    """The request body, read once and left readable for the view.

    request.body refuses anything larger than DATA_UPLOAD_MAX_MEMORY_SIZE
    (2.5 MiB), which is meant for form fields, not for an upload: read it as
    Django's own request.body does (same attributes), under the API's
    upload limit instead. The caller has checked CONTENT_LENGTH."""
    if not hasattr(request, "_body"):
        body = request.read()
        request._body = body
        request._stream = io.BytesIO(body)
    return request.body


def _fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, request.content_type or ""):
        digest.update(part.encode() + b"\0")
    digest.update(_body(request))
    return digest.hexdigest()


def _token_id(request: HttpRequest) -> int | None:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw:
        return None
    return (
        ApiToken.objects.filter(secret_sha256=token_hash(raw.strip()))
        .values_list("pk", flat=True)
        .first()
    )


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None or not request.path.startswith("/api/"):
            return self.get_response(request)
        if not key or len(key) > MAX_KEY_LENGTH:
            return problem_response(
                422,
                "idempotency_key_invalid",
                f"An {HEADER} is 1 to {MAX_KEY_LENGTH} characters.",
            )
        token_id = _token_id(request)
        if token_id is None:
            return self.get_response(request)  # authentication refuses it
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.API_UPLOAD_MAX_BYTES + BODY_OVERHEAD_BYTES:
            return problem_response(
                413,
                "upload_too_large",
                f"The request is {length} bytes; the limit is "
                f"{settings.API_UPLOAD_MAX_BYTES} bytes of files.",
            )
        fingerprint = _fingerprint(request)
        fresh_since = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
        IdempotencyRecord.objects.filter(
            token_id=token_id, key=key, created_at__lt=fresh_since
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    token_id=token_id, key=key, fingerprint=fingerprint
                )
        except IntegrityError:
            return self._replay(token_id, key, fingerprint)
        try:
            response = self.get_response(request)
        except BaseException:
            record.delete()
            raise
        if 200 <= response.status_code < 300 and not response.streaming:
            record.response_status = response.status_code
            record.response_content_type = response.get("Content-Type", "")
            record.response_body = response.content
            record.save(update_fields=["response_status", "response_content_type", "response_body"])
        else:
            record.delete()
        return response

    def _replay(self, token_id: int, key: str, fingerprint: str) -> HttpResponse:
        first = IdempotencyRecord.objects.filter(token_id=token_id, key=key).first()
        if first is None:  # the first request failed and was forgotten meanwhile
            return problem_response(
                409, "idempotency_key_in_use", "A request with this key just ended; retry it."
            )
        if first.fingerprint != fingerprint:
            return problem_response(
                422,
                "idempotency_key_reused",
                f"This {HEADER} was used for a different request; use a new key.",
            )
        if first.response_status is None:
            return problem_response(
                409,
                "idempotency_key_in_use",
                f"A request with this {HEADER} is still running; retry it later.",
            )
        response = HttpResponse(
            bytes(first.response_body),
            status=first.response_status,
            content_type=first.response_content_type or "application/json",
        )
        response["Idempotent-Replayed"] = "true"
        return response
