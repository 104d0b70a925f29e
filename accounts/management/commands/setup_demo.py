from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.hashing import hash_secret, new_salt
from accounts.models import ApiCredential, Tenant
from accounts.services import tenant_create

DEMO_TENANT = "demo"
DEMO_API_USERNAME = "demo"
DEMO_API_PASSWORD = "demo-api-secret-local-only"  # noqa: S105 - a local demo, refused off SQLite
DEMO_MULTITEL_USERNAME = "demo-multitel"
DEMO_MULTITEL_PASSWORD = "demo-multitel-password"  # noqa: S105
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-local-only"  # noqa: S105


class Command(BaseCommand):
    help = (
        "Create (or reset) a demo tenant and an admin user for local use, and print their "
        "credentials with a curl line. Refuses to run against anything but SQLite unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="run even on a non-SQLite database")
        parser.add_argument("--web", default="http://127.0.0.1:8000", help="the portal's address to print")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and not options["force"]:
            raise CommandError("setup_demo is for local SQLite databases; pass --force to override.")
        tenant = Tenant.objects.filter(name=DEMO_TENANT).first()
        if tenant is None:
            tenant = tenant_create(
                name=DEMO_TENANT,
                api_username=DEMO_API_USERNAME,
                api_password=DEMO_API_PASSWORD,
                multitel_username=DEMO_MULTITEL_USERNAME,
                multitel_password=DEMO_MULTITEL_PASSWORD,
            ).tenant
        else:
            # Put the demo's known credentials back, whatever was changed since.
            salt = new_salt()
            ApiCredential.objects.update_or_create(
                username=DEMO_API_USERNAME,
                defaults={
                    "tenant": tenant,
                    "secret_salt": salt,
                    "secret_hash": hash_secret(secret=DEMO_API_PASSWORD, salt=salt),
                    "secret_hint": DEMO_API_PASSWORD[:4],
                    "revoked_at": None,
                },
            )
            tenant.multitel_username = DEMO_MULTITEL_USERNAME
            tenant.multitel_password = DEMO_MULTITEL_PASSWORD
            tenant.is_active = True
            tenant.save()
        User = get_user_model()
        admin = User.objects.filter(username=ADMIN_USERNAME).first() or User(username=ADMIN_USERNAME)
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.set_password(ADMIN_PASSWORD)
        admin.save()

        web = options["web"].rstrip("/")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Demo ready.",
                    f"  Admin:     {web}/admin/   user {ADMIN_USERNAME!r}  password {ADMIN_PASSWORD!r}",
                    f"  API:       user {DEMO_API_USERNAME!r}  password {DEMO_API_PASSWORD!r}",
                    f"  Webhook signing secret of tenant {DEMO_TENANT!r}: {tenant.webhook_secret}",
                    "",
                    "  Try (3 numbers, answered synchronously):",
                    f"    curl -s -u {DEMO_API_USERNAME}:{DEMO_API_PASSWORD} "
                    "-H 'Content-Type: application/json' \\",
                    '      -d \'{"numbers": ["15551230111", "15551230112", "15551230113"]}\' \\',
                    f"      {web}/v3/bulk_restore",
                    "",
                ]
            )
        )
