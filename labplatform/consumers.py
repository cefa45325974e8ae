"""Live events for the signed-in user: VM state, grading results, deadlines.

Services publish small JSON events to the group ``user-<id>`` through the
channel layer; every open page of that user receives them. A cohort's staff
may also subscribe their socket to the cohort's group (the progress board)
by sending ``{"subscribe": "cohort", "cohort": <id>}``; the answer is
``{"kind": "subscribed", "cohort": <id>, "ok": true|false}``, and someone who
may not see the cohort's board is refused and receives nothing of it.
Access is checked again before every board event and whenever the user's
role in the cohort changes; who lost it gets ``ok: false`` and nothing more.
"""

from __future__ import annotations

from typing import Any, Literal

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404
from pydantic import BaseModel, ConfigDict, ValidationError

# Close codes in the 4000 range are ours; the page shows a message per code.
CLOSE_UNAUTHENTICATED = 4401


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


class Subscribe(BaseModel):
    """What the browser may send: a subscription to a cohort's board events."""

    model_config = ConfigDict(extra="forbid")
    subscribe: Literal["cohort"]
    cohort: int


class UserEventsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    extra_groups: set[str]

    async def connect(self) -> None:
        self.extra_groups = set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in (self.group, *self.extra_groups):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Anything but a subscription is ignored: the stream is server-to-browser.
        try:
            request = Subscribe.model_validate(content)
        except ValidationError:
            return
        from labplatform.courses.board.events import cohort_subscription_group

        try:
            group = await sync_to_async(cohort_subscription_group)(
                user=self.scope["user"], cohort_id=request.cohort
            )
        except Http404:
            await self.send_json({"kind": "subscribed", "cohort": request.cohort, "ok": False})
            return
        await self.channel_layer.group_add(group, self.channel_name)
        self.extra_groups.add(group)
        await self.send_json({"kind": "subscribed", "cohort": request.cohort, "ok": True})

    async def user_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event.get("kind") == "board" and not await self._may_watch(event.get("cohort")):
            return
        await self.send_json(event)

    async def cohort_recheck(self, message: dict[str, Any]) -> None:
        """The user's role in a cohort changed (labplatform.courses.board.events)."""
        await self._may_watch(message["cohort"])

    async def _may_watch(self, cohort_id: object) -> bool:
        """Whether this socket may still receive the cohort's board; if it may
        not, it is unsubscribed and told so."""
        from labplatform.courses.board.events import cohort_group, cohort_subscription_group

        if not isinstance(cohort_id, int) or cohort_group(cohort_id) not in self.extra_groups:
            return False
        try:
            await sync_to_async(cohort_subscription_group)(
                user=self.scope["user"], cohort_id=cohort_id
            )
        except Http404:
            self.extra_groups.discard(cohort_group(cohort_id))
            await self.channel_layer.group_discard(cohort_group(cohort_id), self.channel_name)
            await self.send_json({"kind": "subscribed", "cohort": cohort_id, "ok": False})
            return False
        return True
