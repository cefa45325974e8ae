"""The /api/v1/ application: routers, authentication, rate limit, problem
details, and an OpenAPI schema that says what the endpoints really answer."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from labplatform.api.auth import TokenRateThrottle
from labplatform.api.errors import PROBLEM_CONTENT_TYPE, install_handlers, problem_response
from labplatform.api.routers import attempts, cohorts, exercises, labs, webhooks

DESCRIPTION = """\
KernelLab's API for grading pipelines, LMS bridges and scripts.

Authenticate with a token from your settings page: `Authorization: Bearer klab_…`.
Each token carries scopes (`read`, `labs`, `submit`, `cohort-admin`, `webhooks`).
Errors are RFC 9457 problem details (`application/problem+json`) with a stable
`code`. Creates accept an `Idempotency-Key`. Lists are paginated with `limit`
and `offset`. Too many requests get 429 with `Retry-After`.
"""


class KernelLabApi(NinjaAPI):
    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if int(status) >= 400 and "application/json" in content:
                        content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
                    if int(status) == 429:
                        response["headers"] = {
                            "Retry-After": {
                                "description": "seconds to wait",
                                "schema": {"type": "integer"},
                            }
                        }
        return schema


api = KernelLabApi(
    title="KernelLab API",
    version="1.0.0",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    throttle=[TokenRateThrottle()],
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_handlers(api)
api.add_router("", exercises.router)
api.add_router("", labs.router)
api.add_router("", attempts.router)
api.add_router("", cohorts.router)
api.add_router("", webhooks.router)


def not_found(request: HttpRequest, path: str) -> HttpResponse:
    """Unknown paths under /api/v1/ answer a problem, not the site's HTML page."""
    return problem_response(404, "not_found", f"No endpoint at /api/v1/{path}.")
