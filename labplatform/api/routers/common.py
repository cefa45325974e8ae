"""What the routers share: response declarations and the Idempotency-Key header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db.models import Model, QuerySet
from ninja import Schema
from pydantic import Field

from labplatform.api.schemas import Problem

T = TypeVar("T")
M = TypeVar("M", bound=Model)
MAX_PAGE_SIZE = 100

# Every authenticated endpoint can answer these; the OpenAPI schema says so.
ERRORS: dict[int, Any] = {401: Problem, 403: Problem, 404: Problem, 422: Problem, 429: Problem}
CREATE_ERRORS: dict[int, Any] = {**ERRORS, 409: Problem}

IDEMPOTENT: dict[str, Any] = {
    "parameters": [
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": "Any unique string (a UUID): a retry with the same key and body "
            "gets the first answer and creates nothing; the same key with another body is "
            "refused (422 idempotency_key_reused). Kept for 24 hours.",
        }
    ]
}


class PageParams(Schema):
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description="items per page")
    offset: int = Field(0, ge=0, le=1_000_000, description="items to skip")


class Page(Schema, Generic[T]):
    count: int = Field(description="all items matching the filters")
    limit: int
    offset: int
    next_offset: int | None = Field(description="the offset of the next page, if any")
    items: list[T]


def paginate(rows: QuerySet[M], params: PageParams, item: Callable[[M], T]) -> Page[T]:
    count = rows.count()
    window = rows[params.offset : params.offset + params.limit]
    following = params.offset + params.limit
    return Page[T](
        count=count,
        limit=params.limit,
        offset=params.offset,
        next_offset=following if following < count else None,
        items=[item(row) for row in window],
    )
