from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from accounts.models import ApiCredential, Tenant
from restores.querysets import (
    JobQuerySet,
    NumberResultQuerySet,
    SlotLeaseQuerySet,
    UpstreamBreakerQuerySet,
)


class Job(models.Model):
    """One bulk restore request of a tenant."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    class WebhookState(models.TextChoices):
        NONE = "none", "no webhook"
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILING = "failing", "failing, will retry"
        FAILED = "failed", "failed for good"

    ACTIVE_STATUSES = (Status.PENDING, Status.PROCESSING)
    FINISHED_STATUSES = (Status.COMPLETED, Status.CANCELLED)
    WEBHOOK_OUTSTANDING_STATES = (WebhookState.PENDING, WebhookState.FAILING)
    WEBHOOK_FAILING_STATES = (WebhookState.FAILING, WebhookState.FAILED)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="jobs")
    credential = models.ForeignKey(
        ApiCredential, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    is_sync = models.BooleanField(default=False)
    total_numbers = models.PositiveIntegerField()
    success_count = models.PositiveIntegerField(default=0)
    failure_count = models.PositiveIntegerField(default=0)
    webhook_url = models.URLField(max_length=2048, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Last time work on this job was handed to the queue or a worker touched
    # it; the sweeper re-enqueues active jobs that have gone quiet.
    heartbeat_at = models.DateTimeField(auto_now_add=True)

    webhook_state = models.CharField(max_length=10, choices=WebhookState.choices, default=WebhookState.NONE)
    webhook_id = models.CharField(max_length=64, blank=True, default="")
    webhook_error = models.TextField(null=True, blank=True)
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_next_attempt_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("operate_job", "Can retry, cancel, resend the webhook of and export jobs")]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="job_tenant_created"),
            models.Index(fields=["-created_at"], name="job_created"),
            models.Index(
                fields=["heartbeat_at"],
                name="job_active_heartbeat",
                condition=Q(status__in=["pending", "processing"]),
            ),
            models.Index(
                fields=["webhook_next_attempt_at"],
                name="job_webhook_due",
                condition=Q(webhook_state__in=["pending", "failing"]),
            ),
            # Staff portal: the job list filtered by status, or by a failing webhook, newest first.
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            models.Index(
                fields=["-created_at"],
                name="job_webhook_failing",
                condition=Q(webhook_state__in=["failing", "failed"]),
            ),
        ]

    def __str__(self) -> str:
        return str(self.uuid)

    @property
    def done_count(self) -> int:
        return self.success_count + self.failure_count


class NumberResult(models.Model):
    """One number of a job and its outcome; ``position`` keeps submission order."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        SUCCESS = "success"
        FAILED = "failed"

    FINAL_STATUSES = (Status.SUCCESS, Status.FAILED)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="results")
    position = models.PositiveIntegerField()
    number = models.CharField(max_length=15)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(null=True, blank=True)
    requires_identity_update = models.BooleanField(default=False)
    needs_registration = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # A worker's claim: who holds this number and until when.
    lease_token = models.CharField(max_length=32, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=100, blank=True, default="", help_text="The process that last claimed this number."
    )

    objects = NumberResultQuerySet.as_manager()

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="result_job_position"),
            models.UniqueConstraint(fields=["job", "number"], name="result_job_number"),
        ]
        indexes = [
            # The work queue: a job's pending numbers in submission order.
            models.Index(
                fields=["job", "position"],
                name="result_pending_queue",
                condition=Q(status="pending"),
            ),
            # The sweeper: leases that may have expired.
            models.Index(
                fields=["lease_expires_at"],
                name="result_leased",
                condition=Q(status="processing"),
            ),
            models.Index(fields=["number"], name="result_number"),
            # Staff portal: the result list's filters (counted and listed by index, newest job first).
            models.Index(fields=["job", "position"], name="result_failed", condition=Q(status="failed")),
            models.Index(fields=["status_code", "job"], name="result_status_code"),
            models.Index(
                fields=["job"], name="result_identity_update", condition=Q(requires_identity_update=True)
            ),
            models.Index(
                fields=["job"], name="result_needs_registration", condition=Q(needs_registration=True)
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class UpstreamAttempt(models.Model):
    """One HTTP call to Multitel for one number (audit trail)."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILED = "failed", "failed (final)"
        RETRYABLE = "retryable", "failed (retryable)"

    result = models.ForeignKey(NumberResult, on_delete=models.CASCADE, related_name="upstream_attempts")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="upstream_attempts")
    attempt_number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    envelope_code = models.CharField(max_length=32, blank=True, default="")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error = models.TextField(blank=True, default="")
    body_excerpt = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["job", "started_at"], name="attempt_job_started"),
            models.Index(fields=["result", "attempt_number"], name="attempt_result"),
            models.Index(fields=["-started_at"], name="attempt_started"),
            # Staff portal: the attempt list filtered by outcome or HTTP status, newest first.
            models.Index(fields=["outcome", "-started_at"], name="attempt_outcome_started"),
            models.Index(fields=["http_status", "-started_at"], name="attempt_http_status_started"),
        ]

    def __str__(self) -> str:
        return f"{self.result_id} #{self.attempt_number}"


class WebhookDelivery(models.Model):
    """One POST of a job's final result to the tenant's webhook (audit trail)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhook_deliveries")
    attempt_number = models.PositiveSmallIntegerField()
    webhook_id = models.CharField(max_length=64)
    url = models.URLField(max_length=2048)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["job", "attempt_number"], name="delivery_job"),
            models.Index(fields=["-started_at"], name="delivery_started"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.attempt_number}"


class IdempotencyKey(models.Model):
    """A tenant's ``Idempotency-Key`` and the answer it was given (docs/api.md#idempotency)."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField()
    # An in-progress key whose request died is taken over after this.
    locked_until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_tenant_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return self.key


class UpstreamBreaker(models.Model):
    """The circuit breaker of a tenant's Multitel account, shared by every process
    (docs/api.md#outages). No row: closed, never tripped.

    ``closed``: numbers are claimed as usual. ``open``: a burst of retryable failures
    (timeouts, connection errors, 429/502/503/504) was seen; nothing of the tenant is
    claimed until ``retry_at``. ``half_open``: one probe (the claim ``probe_token``, until
    ``probe_expires_at``) tests whether Multitel is back; its success closes the breaker,
    its failure opens it again for a longer cooldown. ``outage_started_at`` is when the
    breaker first opened since it was last closed.
    """

    class State(models.TextChoices):
        CLOSED = "closed", "closed"
        OPEN = "open", "open"
        HALF_OPEN = "half_open", "half open (probing)"

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="upstream_breaker")
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    outage_started_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    cooldown_seconds = models.FloatField(default=0)
    probe_token = models.CharField(max_length=32, blank=True, default="")
    probe_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    changed_at = models.DateTimeField()

    objects = UpstreamBreakerQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["state"], name="breaker_state")]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.state}"


class BreakerEvent(models.Model):
    """One change of state of a tenant's upstream breaker (audit trail)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="breaker_events")
    at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=UpstreamBreaker.State.choices)
    reason = models.CharField(max_length=300)
    worker = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tenant", "-at"], name="breaker_event_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.state} at {self.at:%Y-%m-%d %H:%M:%S}"


class SlotLease(models.Model):
    """Slots of a tenant's concurrency cap held by one task: at most that many of its upstream
    calls in flight. The live slots of a tenant never exceed its ``max_concurrency``; a lease
    its holder stops renewing runs out after ``RESTORE_LEASE_SECONDS``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=32, unique=True)
    slots = models.PositiveIntegerField()
    for_sync = models.BooleanField(default=False)
    holder = models.CharField(max_length=200)
    expires_at = models.DateTimeField()

    objects = SlotLeaseQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["tenant", "expires_at"], name="slot_tenant_expires")]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.slots} until {self.expires_at:%H:%M:%S}"
