"""Hourly clean-up of console data: spent or expired tokens, and recordings
past CONSOLE_RECORDING_RETENTION_DAYS (file and row)."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from vms.console.access import console_tokens_prune
from vms.models import ConsoleSession

log = logging.getLogger(__name__)


def recordings_prune() -> int:
    cutoff = timezone.now() - timedelta(days=settings.CONSOLE_RECORDING_RETENTION_DAYS)
    old = ConsoleSession.objects.filter(started_at__lt=cutoff)
    for path in old.exclude(recording="").values_list("recording", flat=True):
        Path(path).unlink(missing_ok=True)
    deleted, _ = old.delete()
    return deleted


def console_housekeeping() -> dict[str, int]:
    result = {"tokens": console_tokens_prune(), "sessions": recordings_prune()}
    if any(result.values()):
        log.info("console housekeeping: removed %(tokens)s tokens, %(sessions)s sessions", result)
    return result
