"""Webhook signing and one delivery try, per the Standard Webhooks
specification (standardwebhooks.com): the headers webhook-id,
webhook-timestamp and webhook-signature ("v1," + base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>" keyed with the base64-decoded part of the
"whsec_" secret). Receivers verify with any Standard Webhooks library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from dataclasses import dataclass

from labplatform.api.models import WebhookDelivery
from labplatform.api.ssrf import UnsafeWebhookUrl, open_connection

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
    """POST the event, freshly signed (the timestamp is the try's), to a
    checked public address (labplatform.api.ssrf), and say what came back.
    A redirect is not followed. Never raises for what the receiver does."""
    endpoint = delivery.endpoint
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(endpoint.secret, delivery.event_id, body),
    }
    try:
        connection, path = open_connection(endpoint.url, timeout=TIMEOUT_SECONDS)
    except UnsafeWebhookUrl as exc:
        return TryOutcome(None, f"refused: {exc.message}")
    except OSError as exc:  # the name does not resolve
        return TryOutcome(None, f"could not reach the receiver: {exc}")
    try:
        connection.request("POST", path, body=body, headers=headers)
        status = connection.getresponse().status
    except UnsafeWebhookUrl as exc:  # the peer turned out not to be public
        return TryOutcome(None, f"refused: {exc.message}")
    except (OSError, http.client.HTTPException) as exc:
        return TryOutcome(None, f"could not reach the receiver: {exc}")
    finally:
        connection.close()
    if 200 <= status < 300:
        return TryOutcome(status, "")
    if 300 <= status < 400:
        return TryOutcome(
            status,
            f"the receiver answered {status}, a redirect, which webhooks never follow: "
            "register the final URL",
        )
    return TryOutcome(status, f"the receiver answered {status}")
