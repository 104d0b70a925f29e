from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import STAFF_ROLES, staff_user_create


class Command(BaseCommand):
    help = (
        "Create a staff user of the admin with a role: an operator (manages tenants and "
        "credentials, runs job actions) or an auditor (sees everything, changes nothing). "
        "The password is asked for unless --password is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=sorted(STAFF_ROLES))
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password", help="the password (visible in the shell history; prefer the prompt)"
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
        user = staff_user_create(
            username=username, password=password, role=options["role"], email=options["email"]
        )
        self.stdout.write(f"Created staff user {user.get_username()!r} with role {options['role']}.")

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
