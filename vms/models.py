from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from vms.queues import Work, host_queue


class HostQuerySet(models.QuerySet["Host"]):
    def enabled(self) -> HostQuerySet:
        return self.filter(enabled=True)

    def placeable(self) -> HostQuerySet:
        """Hosts that take new labs: not drained, and answering."""
        return self.filter(enabled=True, unreachable_since__isnull=True)


class Host(models.Model):
    """A hypervisor host. Its workers consume the queues ``host.<name>.<work>``
    (vms.queues: lab lifecycle, grading, housekeeping), one worker per kind."""

    name = models.SlugField(max_length=64, unique=True)
    uri = models.CharField(max_length=255, help_text="libvirt URI, e.g. qemu+ssh://root@h2/system")
    # Unticked by staff to drain the host: no new lab goes there, running ones go on.
    enabled = models.BooleanField(default=True)
    max_vms = models.PositiveIntegerField(default=8, help_text="running guests at most")
    # Since when its libvirtd has not answered (vms.hosts.host_check); null
    # while it answers. A host unreachable for HOST_LOST_AFTER_SECONDS is
    # lost: its labs are failed, and none is placed there until it answers.
    unreachable_since = models.DateTimeField(null=True, blank=True)

    objects = HostQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name

    def queue_for(self, work: Work) -> str:
        return host_queue(self.name, work)

    @property
    def takes_labs(self) -> bool:
        return self.enabled and self.unreachable_since is None


# A lab VM's size unless its exercise asks for another.
DEFAULT_MEMORY_MIB = 1024
DEFAULT_VCPUS = 1


def domain_name_for(domain_uuid: uuid.UUID | str) -> str:
    return f"kernellab-{domain_uuid}"


class VMState(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PROVISIONING = "provisioning", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    RESUMING = "resuming", "Resuming"
    RESETTING = "resetting", "Resetting"
    DESTROYING = "destroying", "Destroying"
    DESTROYED = "destroyed", "Destroyed"
    FAILED = "failed", "Failed"
    # The guest's kernel panicked: the guest is off, its disk kept for Restart.
    CRASHED = "crashed", "Crashed"


# States in which a guest occupies memory and CPU on its host.
ACTIVE_STATES = (
    VMState.REQUESTED,
    VMState.PROVISIONING,
    VMState.RUNNING,
    VMState.STOPPING,
    VMState.RESUMING,
    VMState.RESETTING,
)
# States a worker moves through; a row stuck in one of them lost its worker.
TRANSITIONAL_STATES = (
    VMState.PROVISIONING,
    VMState.STOPPING,
    VMState.RESUMING,
    VMState.RESETTING,
    VMState.DESTROYING,
)
# States in which the VM still exists in some form (a domain, an overlay).
LIVE_STATES = (*ACTIVE_STATES, VMState.STOPPED, VMState.CRASHED, VMState.DESTROYING)


class VMKind(models.TextChoices):
    LAB = "lab", "Student lab"
    GRADING = "grading", "Clean grading guest"


class LabVMQuerySet(models.QuerySet["LabVM"]):
    def live(self) -> LabVMQuerySet:
        return self.filter(state__in=LIVE_STATES)

    def active(self) -> LabVMQuerySet:
        return self.filter(state__in=ACTIVE_STATES)


class LabVM(models.Model):
    """A student's disposable guest. The row is the intent; libvirt is the
    truth about what runs; the reaper makes them agree."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=VMKind.choices, default=VMKind.LAB)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="vms"
    )
    exercise = models.ForeignKey("exercises.Exercise", on_delete=models.PROTECT, related_name="vms")
    assignment = models.ForeignKey(
        "courses.Assignment", on_delete=models.SET_NULL, null=True, blank=True, related_name="vms"
    )
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="vms")
    state = models.CharField(
        max_length=16, choices=VMState.choices, default=VMState.REQUESTED, db_index=True
    )
    state_changed_at = models.DateTimeField(default=timezone.now)
    progress = models.CharField(max_length=200, blank=True, help_text="last step reported")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    crash_log = models.TextField(
        blank=True, help_text="the console's last lines when the guest's kernel crashed"
    )
    image_hash = models.CharField(max_length=64, blank=True)
    # The libvirt identity, fixed when the guest first boots: a guest restored
    # from the warm pool keeps the name and uuid it was saved with.
    domain_uuid = models.UUIDField(null=True, blank=True)
    memory_mib = models.PositiveIntegerField(default=DEFAULT_MEMORY_MIB)
    vcpus = models.PositiveSmallIntegerField(default=DEFAULT_VCPUS)
    boot_seconds = models.FloatField(null=True, blank=True)
    worker = models.CharField(
        max_length=128, blank=True, help_text="host:pid of the worker process doing the last step"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = LabVMQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "state"]), models.Index(fields=["host", "state"])]

    def __str__(self) -> str:
        return f"{self.domain_name} ({self.owner}, {self.state})"

    @property
    def domain_name(self) -> str:
        return domain_name_for(self.domain_uuid) if self.domain_uuid else ""

    @property
    def hostname(self) -> str:
        """The guest's own hostname: short, unique enough, no personal data."""
        return f"lab-{str(self.id)[:8]}"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    def transition(self, old: str | tuple[str, ...], new: VMState, **fields: object) -> bool:
        """Compare-and-set: move to ``new`` only if the row is still in ``old``.

        Returns False (and changes nothing) when another worker or request got
        there first, which makes retried and duplicated tasks harmless.
        """
        olds = old if isinstance(old, tuple) else (old,)
        now: datetime = timezone.now()
        updated = LabVM.objects.filter(pk=self.pk, state__in=olds).update(
            state=new, state_changed_at=now, **fields
        )
        if updated:
            self.state = new
            self.state_changed_at = now
            for key, value in fields.items():
                setattr(self, key, value)
            from vms.signals import vm_state_changed

            vm_id = self.pk
            transaction.on_commit(
                lambda: vm_state_changed.send(sender=LabVM, vm_id=vm_id, state=new)
            )
        return bool(updated)


class ConsoleToken(models.Model):
    """A one-time ticket into a VM's console: issued by the page, bound to a
    user and a VM, valid for a minute, spent on first use. Only its hash is
    stored."""

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_tokens"
    )
    vm = models.ForeignKey(LabVM, on_delete=models.CASCADE, related_name="console_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"console token of {self.user_id} for {self.vm_id}"


class ConsoleMode(models.TextChoices):
    READ_WRITE = "rw", "Read-write (owner)"
    READ_ONLY = "ro", "Watching (instructor)"


class ConsoleSession(models.Model):
    """One websocket connection to a VM's console, recorded (asciicast v2)
    when it is the owner's."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    vm = models.ForeignKey(LabVM, on_delete=models.CASCADE, related_name="console_sessions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_sessions"
    )
    mode = models.CharField(max_length=2, choices=ConsoleMode.choices)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    recording = models.CharField(max_length=255, blank=True, help_text="path of the .cast file")
    recorded_bytes = models.PositiveBigIntegerField(default=0)
    recording_truncated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.user} on {self.vm_id} at {self.started_at:%Y-%m-%d %H:%M}"
