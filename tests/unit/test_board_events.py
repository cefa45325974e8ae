"""Live board events: who may subscribe to a cohort, and what is published.

Through the real ASGI app (Origin check, session auth) and the real Redis
channel layer, like tests/integration/test_websocket_auth.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from celery.signals import after_task_publish
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from exercises.models import Attempt, AttemptKind, AttemptStatus
from exercises.signals import attempt_finished
from labplatform.accounts.models import User
from labplatform.asgi import application
from labplatform.courses.board.events import board_cell_publish
from labplatform.courses.models import GradeOverride, Role
from labplatform.courses.roster.services import roster_staff_remove
from labplatform.courses.services import enrolment_set
from tests.conftest import World, exercise_version_for, make_user
from vms.models import Host, LabVM, VMState

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

GOOD_ORIGIN = (b"origin", b"http://localhost:8000")

Connect = Callable[[User], Awaitable[WebsocketCommunicator]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    sockets: list[WebsocketCommunicator] = []

    async def open_socket(user: User) -> WebsocketCommunicator:
        client = Client()
        await sync_to_async(client.force_login)(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        socket = WebsocketCommunicator(
            application, "/ws/events/", headers=[GOOD_ORIGIN, (b"cookie", cookie)]
        )
        connected, _ = await socket.connect()
        assert connected
        sockets.append(socket)
        return socket

    yield open_socket
    for socket in sockets:
        await socket.disconnect()


async def subscribe(socket: WebsocketCommunicator, cohort_id: int) -> dict[str, Any]:
    await socket.send_json_to({"subscribe": "cohort", "cohort": cohort_id})
    answer: dict[str, Any] = await socket.receive_json_from(timeout=5)
    return answer


async def publish_to_autumn(world: World) -> None:
    await sync_to_async(board_cell_publish)(
        assignment=world.hello, student_id=world.alice.pk, reason="test"
    )


EXPECTED = {"kind": "board", "reason": "test"}


# --- who may subscribe --------------------------------------------------------------


async def test_instructor_subscribes_and_receives_the_cohort_events(
    world: World, connect: Connect
) -> None:
    tess = await connect(world.tess)
    assert await subscribe(tess, world.autumn.pk) == {
        "kind": "subscribed",
        "cohort": world.autumn.pk,
        "ok": True,
    }
    await publish_to_autumn(world)
    event = await tess.receive_json_from(timeout=5)
    assert event == {
        **EXPECTED,
        "cohort": world.autumn.pk,
        "student": world.alice.pk,
        "assignment": world.hello.pk,
    }


async def test_ta_may_subscribe(world: World, connect: Connect) -> None:
    ta = await sync_to_async(make_user)("tina")
    await sync_to_async(enrolment_set)(user=ta, cohort=world.autumn, role=Role.TA)
    socket = await connect(ta)
    assert (await subscribe(socket, world.autumn.pk))["ok"] is True
    await publish_to_autumn(world)
    assert (await socket.receive_json_from(timeout=5))["kind"] == "board"


@pytest.mark.parametrize("persona", ["alice", "charlie"])
async def test_student_and_other_instructor_are_refused_and_get_nothing(
    world: World, connect: Connect, persona: str
) -> None:
    socket = await connect(getattr(world, persona))
    assert (await subscribe(socket, world.autumn.pk))["ok"] is False
    await publish_to_autumn(world)
    assert await socket.receive_nothing(timeout=0.5)


async def test_unknown_cohort_is_refused(world: World, connect: Connect) -> None:
    socket = await connect(world.tess)
    assert (await subscribe(socket, 999_999))["ok"] is False


async def test_other_messages_are_ignored(world: World, connect: Connect) -> None:
    socket = await connect(world.tess)
    await socket.send_json_to({"subscribe": "everything"})
    assert await socket.receive_nothing(timeout=0.3)


# --- what is published --------------------------------------------------------------


def make_attempt(world: World, **extra: Any) -> Attempt:
    fields: dict[str, Any] = {
        "student": world.alice,
        "assignment": world.hello,
        "exercise": world.hello.exercise,
        "version": exercise_version_for(world.hello.exercise),
        "kind": AttemptKind.SUBMIT,
        "status": AttemptStatus.QUEUED,
        "max_score": 10,
        **extra,
    }
    return Attempt.objects.create(**fields)


async def subscribed_tess(world: World, connect: Connect) -> WebsocketCommunicator:
    socket = await connect(world.tess)
    assert (await subscribe(socket, world.autumn.pk))["ok"] is True
    return socket


def queue_for_grading(attempt: Attempt) -> None:
    """What Celery signals when exercises' services hand a new attempt to
    the grading task, after its row committed (protocol 2's body)."""
    after_task_publish.send(
        sender="exercises.grade", body=((attempt.pk,), {}, {}), headers={"task": "exercises.grade"}
    )


async def test_a_queued_attempt_is_published(world: World, connect: Connect) -> None:
    attempt = await sync_to_async(make_attempt)(world)
    tess = await subscribed_tess(world, connect)
    await sync_to_async(queue_for_grading)(attempt)
    event = await tess.receive_json_from(timeout=5)
    assert (event["student"], event["assignment"], event["reason"]) == (
        world.alice.pk,
        world.hello.pk,
        "attempt",
    )


async def test_a_staff_preview_is_not_published(world: World, connect: Connect) -> None:
    attempt = await sync_to_async(make_attempt)(world, student=world.tess, is_preview=True)
    tess = await subscribed_tess(world, connect)
    await sync_to_async(queue_for_grading)(attempt)
    assert await tess.receive_nothing(timeout=0.5)


async def test_an_override_is_published(world: World, connect: Connect) -> None:
    tess = await subscribed_tess(world, connect)
    await sync_to_async(GradeOverride.objects.create)(
        assignment=world.hello,
        student=world.alice,
        score=Decimal(5),
        reason="partial credit",
        created_by=world.tess,
    )
    event = await tess.receive_json_from(timeout=5)
    assert (event["student"], event["reason"]) == (world.alice.pk, "override")


async def test_a_finished_attempt_is_published(world: World, connect: Connect) -> None:
    attempt = await sync_to_async(make_attempt)(world)
    tess = await subscribed_tess(world, connect)
    await sync_to_async(attempt_finished.send)(sender=Attempt, attempt_id=attempt.pk)
    event = await tess.receive_json_from(timeout=5)
    assert (event["student"], event["reason"]) == (world.alice.pk, "graded")


async def test_a_lab_vm_state_change_is_published(world: World, connect: Connect) -> None:
    def make_vm() -> LabVM:
        return LabVM.objects.create(
            owner=world.alice,
            exercise=world.hello.exercise,
            assignment=world.hello,
            host=Host.objects.get(name="local"),
            expires_at=timezone.now() + timedelta(hours=1),
        )

    vm = await sync_to_async(make_vm)()
    tess = await subscribed_tess(world, connect)
    moved = await sync_to_async(vm.transition)(VMState.REQUESTED, VMState.PROVISIONING)
    assert moved
    event = await tess.receive_json_from(timeout=5)
    assert (event["student"], event["assignment"], event["reason"]) == (
        world.alice.pk,
        world.hello.pk,
        "vm",
    )


async def test_another_cohorts_vm_is_not_published_to_this_one(
    world: World, connect: Connect
) -> None:
    def make_vm() -> LabVM:
        return LabVM.objects.create(
            owner=world.bob,
            exercise=world.strace.exercise,
            assignment=world.strace,
            host=Host.objects.get(name="local"),
            expires_at=timezone.now() + timedelta(hours=1),
        )

    vm = await sync_to_async(make_vm)()
    tess = await subscribed_tess(world, connect)
    await sync_to_async(vm.transition)(VMState.REQUESTED, VMState.PROVISIONING)
    assert await tess.receive_nothing(timeout=0.5)


# --- access lost while subscribed ---------------------------------------------------


async def test_a_ta_removed_while_watching_stops_receiving_the_board_at_once(
    world: World, connect: Connect
) -> None:
    """Access is checked when the page subscribes; a TA removed from the staff
    afterwards must not keep receiving the cohort's events on the open socket."""
    ta = await sync_to_async(make_user)("tina")
    await sync_to_async(enrolment_set)(user=ta, cohort=world.autumn, role=Role.TA)
    socket = await connect(ta)
    assert (await subscribe(socket, world.autumn.pk))["ok"] is True
    await sync_to_async(roster_staff_remove)(cohort=world.autumn, actor=world.tess, user_id=ta.pk)
    assert await socket.receive_json_from(timeout=5) == {
        "kind": "subscribed",
        "cohort": world.autumn.pk,
        "ok": False,
    }
    await publish_to_autumn(world)
    assert await socket.receive_nothing(timeout=0.5)


async def test_access_lost_another_way_is_noticed_at_the_next_event(
    world: World, connect: Connect
) -> None:
    """However the role went (an admin edited the row), the next event is
    checked against the current role before it is sent."""
    ta = await sync_to_async(make_user)("tina")
    await sync_to_async(enrolment_set)(user=ta, cohort=world.autumn, role=Role.TA)
    socket = await connect(ta)
    assert (await subscribe(socket, world.autumn.pk))["ok"] is True
    await sync_to_async(enrolment_set)(user=ta, cohort=world.autumn, role=Role.STUDENT)
    await publish_to_autumn(world)
    assert await socket.receive_json_from(timeout=5) == {
        "kind": "subscribed",
        "cohort": world.autumn.pk,
        "ok": False,
    }
    await publish_to_autumn(world)
    assert await socket.receive_nothing(timeout=0.5)
