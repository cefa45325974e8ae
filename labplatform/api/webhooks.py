"""Webhook signing and one delivery try, per the Standard Webhooks
specification (standardwebhooks.com): the headers webhook-id,
webhook-timestamp and webhook-signature ("v1," + base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>" keyed with the base64-decoded part of the
"whsec_" secret). Receivers verify with any Standard Webhooks library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from labplatform.api.models import WebhookDelivery

SECRET_PREFIX = "whsec_"  # noqa: S105 (the spec's marker, not a secret)
TIMEOUT_SECONDS = 10
USER_AGENT = "KernelLab-Webhooks/1"


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": signature(secret, msg_id, moment, body),
    }


def body_of(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class TryOutcome:
    status_code: int | None  # None: no HTTP answer at all
    error: str  # empty on a 2xx

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_once(delivery: WebhookDelivery) -> TryOutcome:
    """POST the event, freshly signed (the timestamp is the try's), and say
    what came back. Never raises for what the receiver does."""
    endpoint = delivery.endpoint
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(endpoint.secret, delivery.event_id, body),
    }
    if urllib.parse.urlsplit(endpoint.url).scheme not in ("http", "https"):
        return TryOutcome(None, "only http and https URLs receive webhooks")
    # The scheme was checked just above.
    request = urllib.request.Request(endpoint.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return TryOutcome(exc.code, f"the receiver answered {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return TryOutcome(None, f"could not reach the receiver: {reason}")
    if 200 <= status < 300:
        return TryOutcome(status, "")
    return TryOutcome(status, f"the receiver answered {status}")
