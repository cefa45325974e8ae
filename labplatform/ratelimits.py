"""Rate limits on what costs the hypervisor hosts work (Start and the other
lab actions, console tickets, Check, Submit), and the answer to a locked-out
login.

Counted per user in the Django cache (Redis, shared by every web process)
in fixed windows, one atomic increment per request (WindowThrottle, which the
API's per-token limit uses too).
Over the limit: 429 with Retry-After; JSON (``error``, ``message``) for the
page's fetch() calls, an error page saying when to try again for a plain form.
The rates are settings.RATE_LIMITS, read at each request.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from ninja.throttling import SimpleRateThrottle

View = Callable[..., HttpResponse]

# What the student did too often, as the message names it.
_WHAT = {
    "lab": "lab actions (start, stop, resume, reset)",
    "console": "console connections",
    "check": "Checks",
    "submit": "Submits",
}


class WindowThrottle(SimpleRateThrottle):
    """django-ninja's throttle, counted atomically: at most ``num_requests``
    per fixed window of ``duration`` seconds, each request one cache.incr.

    Ninja's own check reads a list of timestamps, decides, then writes the
    list back: requests in flight together each read the same list, and a
    student firing a dozen fetch() calls at once got all of them through a
    limit of three. A fixed window can let up to twice the limit through
    across a window's edge, never more."""

    def allow_request(self, request: HttpRequest) -> bool:
        self.key = self.get_cache_key(request)
        if self.key is None:
            return True
        assert self.num_requests is not None
        assert self.duration is not None
        self.now = self.timer()  # type: ignore[misc]
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        counter = f"{self.key}:{window}"
        self.cache.add(counter, 0, self.duration + 1)
        try:
            count = self.cache.incr(counter)
        except ValueError:  # expired between add and incr: a new window's first
            self.cache.add(counter, 1, self.duration + 1)
            count = 1
        return count <= self.num_requests

    def wait(self) -> float:
        """Seconds until the window reopens (ninja's Retry-After)."""
        return max(1.0, self.window_ends - self.now)


class UserRateThrottle(WindowThrottle):
    """Requests of one signed-in user in one scope of settings.RATE_LIMITS."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(settings.RATE_LIMITS[scope])

    def get_cache_key(self, request: HttpRequest) -> str | None:
        if not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": f"web-{self.scope}", "ident": request.user.pk}

    def retry_after(self) -> int:
        """Whole seconds until the window reopens."""
        return math.ceil(self.wait())


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def too_many_requests(request: HttpRequest, *, message: str, retry_after: int) -> HttpResponse:
    response: HttpResponse
    if _wants_json(request):
        response = JsonResponse({"error": "rate_limited", "message": message}, status=429)
    else:
        response = render(request, "429.html", {"message": message}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def _in(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def rate_limit(scope: str) -> Callable[[View], View]:
    """Limit a view per signed-in user (put it under login_required and
    require_POST, so that only real attempts count)."""
    if scope not in _WHAT:
        raise ValueError(f"unknown rate-limit scope {scope!r}")

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            throttle = UserRateThrottle(scope)
            if not throttle.allow_request(request):
                wait = throttle.retry_after()
                return too_many_requests(
                    request,
                    message=f"Too many {_WHAT[scope]} in a short time. Try again in {_in(wait)}.",
                    retry_after=wait,
                )
            return view(request, *args, **kwargs)

        return limited

    return decorate


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """django-axes' answer once a username has failed too often from one
    address (settings AXES_*): 429, and when to try again."""
    wait = int(settings.AXES_COOLOFF_TIME.total_seconds())
    return too_many_requests(
        request,
        message="Too many failed logins for this account from your address. "
        f"Logging in is paused for {_in(wait)}; if you forgot your password, reset it.",
        retry_after=wait,
    )
