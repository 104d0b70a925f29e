"""``manage.py setup_demo``: the demo credential follows the rule for API secrets, and the docs
show the one it really sets."""

from __future__ import annotations

import base64
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.management.commands.setup_demo import DEMO_API_PASSWORD, DEMO_API_USERNAME
from accounts.models import ApiCredential
from accounts.services import api_secret_validate

ROOT = Path(__file__).resolve().parents[2]


def demo_authenticates() -> bool:
    client = APIClient()
    token = base64.b64encode(f"{DEMO_API_USERNAME}:{DEMO_API_PASSWORD}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    status = client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())}).status_code
    assert status in (401, 404)
    return status == 404


def test_it_sets_up_a_demo_credential_that_follows_the_rule_and_resets_it(db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    api_secret_validate(DEMO_API_PASSWORD)  # at least 24 characters, like any chosen secret
    out = StringIO()

    call_command("setup_demo", "--force", stdout=out)

    assert f"password {DEMO_API_PASSWORD!r}" in out.getvalue()
    assert demo_authenticates()
    ApiCredential.objects.filter(username=DEMO_API_USERNAME).update(secret_hash="0" * 64)
    assert not demo_authenticates()
    call_command("setup_demo", "--force", stdout=StringIO())
    assert demo_authenticates()


def test_it_documents_the_demo_credential_that_setup_demo_sets() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

    assert f"password '{DEMO_API_PASSWORD}'" in readme
    assert f"-u {DEMO_API_USERNAME}:{DEMO_API_PASSWORD} " in readme
    assert f"`{DEMO_API_USERNAME}` / `{DEMO_API_PASSWORD}`" in readme
    assert f"`{DEMO_API_USERNAME}` / `{DEMO_API_PASSWORD}`" in api
