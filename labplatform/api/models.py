"""API tokens, idempotency records and webhooks.

A token's secret is shown once, when it is created; only its SHA-256 is
stored (a token is 256 random bits, so a fast hash is enough: there is
nothing to brute-force). Its first characters (the prefix) stay visible so
that a user can tell their tokens apart.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class Scope(models.TextChoices):
    READ = "read", "Read: exercises, labs, attempts"
    LABS = "labs", "Labs: start, stop, resume, reset, destroy"
    SUBMIT = "submit", "Submit: check and submit work"
    COHORT_ADMIN = "cohort-admin", "Cohort admin: rosters and gradebooks of cohorts you teach"
    # Apart from read: a registered URL keeps receiving events after the token
    # that made it is revoked, so making one is a right of its own.
    WEBHOOKS = "webhooks", "Webhooks: register, test and remove your webhooks"


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="what it is for, e.g. 'CI of os-course'")
    prefix = models.CharField(max_length=16, help_text="the start of the secret, shown in lists")
    secret_sha256 = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, help_text="values of Scope")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        # Also the rate limiter's key (ninja's AuthRateThrottle hashes str(request.auth)).
        return f"API token {self.pk} ({self.prefix}…) of {self.user_id}"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def has_scope(self, scope: Scope) -> bool:
        return scope.value in self.scopes


class IdempotencyRecord(models.Model):
    """The first answer to a create made with an Idempotency-Key, replayed to
    a retry of the same request. response_status is null while the first
    request is still running."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    response_body = models.BinaryField(default=bytes)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="idempotency_key_once_per_token")
        ]

    def __str__(self) -> str:
        return f"{self.key} of token {self.token_id}"


class WebhookEvent(models.TextChoices):
    ATTEMPT_FINISHED = "attempt.finished", "An attempt (Check or Submit) finished grading"
    LAB_STATE_CHANGED = "lab.state_changed", "A lab VM changed state (started, stopped...)"
    PING = "webhook.test", "A test event (the 'send a test event' button)"


# What an endpoint can ask for (the test event always goes).
SUBSCRIBABLE = (WebhookEvent.ATTEMPT_FINISHED, WebhookEvent.LAB_STATE_CHANGED)


def default_events() -> list[str]:
    return [WebhookEvent.ATTEMPT_FINISHED.value]


class WebhookEndpoint(models.Model):
    """A URL that receives signed events: the owner's own attempts, or (with
    a cohort, registered by one of its instructors) every attempt in it."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    cohort = models.ForeignKey(
        "courses.Cohort",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhook_endpoints",
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True, help_text="what it is for")
    events = models.JSONField(default=default_events, help_text="values of WebhookEvent")
    # Standard Webhooks: "whsec_" + base64 of the key; shown to the owner once.
    secret = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event: WebhookEvent) -> bool:
        return event.value in self.events


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event for one endpoint, and every try to deliver it."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64, help_text="the webhook-id header; same on retries")
    event_type = models.CharField(max_length=64, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    tries = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} to {self.endpoint_id}: {self.status}"
