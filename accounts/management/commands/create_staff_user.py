from __future__ import annotations

import getpass
from base64 import b32encode
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.services import STAFF_ROLES, staff_user_create


class Command(BaseCommand):
    help = (
        "Create a staff user of the admin with a role: an operator (manages tenants and "
        "credentials, runs job actions) or an auditor (sees everything, changes nothing). "
        "The password is asked for unless --password is given. With --with-totp the user also "
        "gets a TOTP device for two-factor logins, and its secret is printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=sorted(STAFF_ROLES))
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password", help="the password (visible in the shell history; prefer the prompt)"
        )
        parser.add_argument(
            "--with-totp",
            action="store_true",
            help="also add a TOTP device and print its provisioning URI and secret",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"].strip()
        if not username:
            raise CommandError("USERNAME must not be empty.")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        password = options["password"]
        if password is None:
            password = self._prompt_password()
        try:
            validate_password(password, User(username=username, email=options["email"]))
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        with transaction.atomic():
            user = staff_user_create(
                username=username, password=password, role=options["role"], email=options["email"]
            )
            device = TOTPDevice.objects.create(user=user, name="default") if options["with_totp"] else None
        self.stdout.write(f"Created staff user {user.get_username()!r} with role {options['role']}.")
        if device is not None:
            self.stdout.write(
                "\n".join(
                    [
                        "TOTP device 'default' added. Open the URI as a QR code in an authenticator",
                        "app, or type the secret in; its codes are then asked for at login when",
                        "ADMIN_REQUIRE_2FA is on. Keep both secret (not in logs or tickets).",
                        f"  Provisioning URI: {device.config_url}",
                        f"  Secret (base32):  {b32encode(device.bin_key).decode()}",
                    ]
                )
            )

    def _prompt_password(self) -> str:
        for _ in range(3):
            password = getpass.getpass("Password: ")
            if not password:
                self.stderr.write("The password must not be empty.")
                continue
            if password != getpass.getpass("Password (again): "):
                self.stderr.write("The passwords do not match.")
                continue
            return password
        raise CommandError("No password given.")
