"""Signals other apps may listen to, so that exercises never imports them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the transaction that stored an attempt's result has committed,
# with attempt_id=<int>. Receivers must not raise (failures are theirs to log).
attempt_finished = Signal()
