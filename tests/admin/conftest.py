"""Staff users of each role and logged-in clients; tasks are recorded, never sent."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from tests.support.parties import logged_in, make_staff
from tests.support.queue import Task


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _tasks_recorded(enqueued: list[Task]) -> None:
    """Every admin test records the tasks it hands to the queue (``enqueued``) instead of sending them."""


@pytest.fixture
def operator(db: None) -> AbstractBaseUser:
    return make_staff("olga", "operator")


@pytest.fixture
def auditor(db: None) -> AbstractBaseUser:
    return make_staff("arne", "auditor")


@pytest.fixture
def operator_client(operator: AbstractBaseUser) -> Client:
    return logged_in(operator)


@pytest.fixture
def auditor_client(auditor: AbstractBaseUser) -> Client:
    return logged_in(auditor)


@pytest.fixture
def superuser_client(admin_user: AbstractBaseUser) -> Client:
    return logged_in(admin_user)
