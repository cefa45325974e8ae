"""Bearer-token authentication with a scope per endpoint, and the per-token
rate limit."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.security import HttpBearer
from ninja.throttling import AuthRateThrottle

from labplatform.accounts.models import User
from labplatform.api.errors import ApiError
from labplatform.api.models import ApiToken, Scope
from labplatform.api.services import token_authenticate
from labplatform.ratelimits import WindowThrottle


class TokenAuth(HttpBearer):
    """Accepts a usable token (not revoked, not expired) that carries
    ``scope``; a valid token without it gets 403 insufficient_scope."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = token_authenticate(raw=token)
        if found is None:
            return None  # 401 not_authenticated
        if not found.has_scope(self.scope):
            raise ApiError(
                403,
                "insufficient_scope",
                f"This token lacks the '{self.scope.value}' scope this endpoint needs.",
            )
        return found


READ = TokenAuth(Scope.READ)
LABS = TokenAuth(Scope.LABS)
SUBMIT = TokenAuth(Scope.SUBMIT)
COHORT_ADMIN = TokenAuth(Scope.COHORT_ADMIN)
WEBHOOKS = TokenAuth(Scope.WEBHOOKS)


def token_of(request: HttpRequest) -> ApiToken:
    token = getattr(request, "auth", None)
    assert isinstance(token, ApiToken), "endpoint without TokenAuth"
    return token


def user_of(request: HttpRequest) -> User:
    return token_of(request).user


class TokenRateThrottle(WindowThrottle, AuthRateThrottle):
    """Requests per token (API_RATE_LIMIT, e.g. '120/min'), counted in the
    Django cache; over the limit: 429 with Retry-After. The rate is read at
    each request, so that a changed setting applies without a restart."""

    scope = "api-token"

    def __init__(self) -> None:
        super().__init__(settings.API_RATE_LIMIT)

    def allow_request(self, request: HttpRequest) -> bool:
        self.rate = settings.API_RATE_LIMIT
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)
