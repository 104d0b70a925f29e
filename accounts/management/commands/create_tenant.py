from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from accounts.models import ApiCredential, Tenant
from accounts.services import API_SECRET_MIN_LENGTH, api_secret_validate, tenant_create


class Command(BaseCommand):
    help = (
        "Create a tenant with its first API credential and its Multitel credentials; "
        "prints the tenant's webhook signing secret, and the API secret when it was generated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--api-username", required=True)
        parser.add_argument(
            "--api-password",
            help=f"the API secret, at least {API_SECRET_MIN_LENGTH} characters; "
            "leave it out to have one generated (and printed once)",
        )
        parser.add_argument("--upstream-username", required=True, help="Multitel username")
        parser.add_argument("--upstream-password", required=True, help="Multitel password")
        parser.add_argument("--max-concurrency", type=int, default=10)

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("NAME must not be empty.")
        if options["max_concurrency"] < 1:
            raise CommandError("--max-concurrency must be at least 1.")
        api_password = options["api_password"] or None
        if api_password is not None:
            try:
                api_secret_validate(api_password)
            except ValidationError as exc:
                raise CommandError("--api-password refused: " + " ".join(exc.messages)) from exc
        if Tenant.objects.filter(name=name).exists():
            raise CommandError(f"A tenant named {name!r} already exists.")
        if ApiCredential.objects.filter(username=options["api_username"]).exists():
            raise CommandError(f"The API username {options['api_username']!r} is taken.")
        try:
            created = tenant_create(
                name=name,
                api_username=options["api_username"],
                api_password=api_password,
                multitel_username=options["upstream_username"],
                multitel_password=options["upstream_password"],
                max_concurrency=options["max_concurrency"],
            )
        except IntegrityError as exc:
            raise CommandError(f"Could not create the tenant: {exc}") from exc
        self.stdout.write(f"Created tenant {created.tenant.name!r} (id {created.tenant.pk}).")
        self.stdout.write(f"API username: {created.credential.credential.username}")
        if api_password is None:
            # Generated: this is the only time it can be seen (only its hash is stored).
            self.stdout.write(f"API secret (shown once): {created.credential.secret}")
        self.stdout.write(f"Webhook signing secret: {created.tenant.webhook_secret}")
