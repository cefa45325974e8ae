"""An attempt as JSON, for the exercise page's live updates (and any event
published about it): one shape wherever an attempt leaves the server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse

from exercises.models import Attempt


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _files(attempt: Attempt) -> dict[str, Any] | None:
    files = attempt.files if attempt.files_id is not None else None
    if files is None:
        return None
    return {
        "url": reverse("attempt_files", args=[attempt.pk]),
        "sha256": files.sha256,
        "count": len(files.listing),
        "size": files.size,
        "notes": files.notes,
    }


def attempt_payload(attempt: Attempt, **extra: Any) -> dict[str, Any]:
    """Everything the feedback panel shows. Reads ``attempt.results`` (prefetch it)."""
    return {
        "kind": "attempt",
        "id": attempt.pk,
        "exercise": attempt.exercise.slug,
        "attempt_kind": attempt.kind,
        "attempt_kind_label": attempt.get_kind_display(),
        "status": attempt.status,
        "status_label": attempt.get_status_display(),
        "is_finished": attempt.is_finished,
        "score": attempt.score,
        "max_score": attempt.max_score,
        "reason": attempt.reason,
        "is_late": attempt.is_late,
        "results": [
            {
                "check_id": result.check_id,
                "title": result.title,
                "passed": result.passed,
                "points": result.points,
                "max_points": result.max_points,
                "message": result.message,
                "hidden": result.hidden,
            }
            for result in attempt.results.all()
        ],
        "kernel_log": attempt.kernel_log,
        "created_at": _iso(attempt.created_at),
        "started_at": _iso(attempt.started_at),
        "finished_at": _iso(attempt.finished_at),
        "files": _files(attempt),
        "url": reverse("attempt_detail", args=[attempt.pk]),
        "status_url": reverse("attempt_status", args=[attempt.pk]),
        **extra,
    }
