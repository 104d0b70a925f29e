from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.crypto import EncryptedTextField


class Tenant(models.Model):
    """A customer of the portal, with its own Multitel account behind the proxy."""

    name = models.CharField(max_length=100, unique=True)
    is_active = models.BooleanField(
        default=True, help_text="A disabled tenant's API calls are refused (403)."
    )
    multitel_username = models.CharField(max_length=150)
    multitel_password = EncryptedTextField(help_text="Stored encrypted; never shown again.")
    webhook_secret = EncryptedTextField(
        help_text="Standard Webhooks signing secret (whsec_…), stored encrypted."
    )
    max_concurrency = models.PositiveIntegerField(
        default=10, help_text="Upstream calls in flight for this tenant, across all workers."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF treats the authenticated principal as ``request.user``.
    @property
    def is_authenticated(self) -> bool:
        return True


class ApiCredential(models.Model):
    """HTTP Basic credentials a tenant's system uses; several per tenant for rotation.

    The secret is stored only as a salted SHA-256 hash: secrets are checked on
    every API request, so a slow password hash (PBKDF2) would cost more than the
    request itself. Generated secrets carry 192 bits of entropy.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_credentials")
    username = models.CharField(max_length=150, unique=True)
    secret_salt = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    secret_hint = models.CharField(
        max_length=8, editable=False, help_text="The secret's first characters, to tell keys apart."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["tenant"], name="apicred_active_by_tenant", condition=Q(revoked_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
