"""Log records carry the VM and attempt they are about.

A Celery task whose first parameter is ``vm_id`` or ``attempt_id`` runs with
that id in a context variable (``bind_task_ids``, connected in
labplatform/celery.py); ``LogContextFilter`` copies the ids onto every
record. ``LOG_FORMAT=json`` prints one JSON object per line for a log
shipper; the default text format appends ``vm=… attempt=…`` when set.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

vm_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("vm_id", default=None)
attempt_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "attempt_id", default=None
)
_VARS = {"vm_id": vm_id_var, "attempt_id": attempt_id_var}


@contextlib.contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Within the block, records carry these ids (vm_id=, attempt_id=)."""
    tokens = [(_VARS[name], _VARS[name].set(str(value))) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def task_ids(
    task: Any, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
) -> dict[str, str]:
    """The ids a task call is about: its ``vm_id``/``attempt_id`` arguments,
    by name (keyword) or by position."""
    try:
        parameters = list(inspect.signature(task.run).parameters)
    except (TypeError, ValueError):
        return {}
    found = {}
    for name in _VARS:
        if name in kwargs:
            found[name] = str(kwargs[name])
        elif name in parameters and parameters.index(name) < len(args):
            found[name] = str(args[parameters.index(name)])
    return found


_task_contexts: dict[str, contextlib.ExitStack] = {}


def bind_task_ids(
    task_id: str, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], **_: Any
) -> None:
    """celery task_prerun receiver."""
    ids = task_ids(task, args or (), kwargs or {})
    if ids:
        stack = contextlib.ExitStack()
        stack.enter_context(log_context(**ids))
        _task_contexts[task_id] = stack


def unbind_task_ids(task_id: str, **_: Any) -> None:
    """celery task_postrun receiver."""
    stack = _task_contexts.pop(task_id, None)
    if stack is not None:
        stack.close()


class LogContextFilter(logging.Filter):
    """Puts ``vm_id`` and ``attempt_id`` (or None) on every record, and a
    ready-made `` vm=… attempt=…`` suffix for text formats (``context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        parts = []
        for name, var in _VARS.items():
            value = getattr(record, name, None) or var.get()
            setattr(record, name, value)
            if value is not None:
                parts.append(f"{name.removesuffix('_id')}={value}")
        record.context = (" [" + " ".join(parts) + "]") if parts else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, and
    the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _VARS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
