"""/healthz and /readyz: unauthenticated, cheap, and a 503 that names what failed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db.utils import OperationalError
from django.test import Client
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from portal import health
from tests.support.outages import database_unreachable

pytestmark = pytest.mark.django_db


@pytest.fixture
def publish_cluster() -> Iterator[Any]:
    """Publish a qcluster's status in the real broker, as a running cluster does."""
    keys: list[str] = []
    broker = get_broker()

    def publish(status: Any = Conf.WORKING) -> None:
        stat = Status(pid=4242, cluster_id=f"test-{uuid.uuid4().hex[:8]}")
        stat.status = status
        key = Stat.get_key(stat.cluster_id)
        keys.append(key)
        broker.set_stat(key, SignedPackage.dumps(stat, True), 30)

    yield publish
    for key in keys:
        if isinstance(broker, Redis):
            broker.connection.delete(key)
        else:
            broker.cache.delete(key)


class DeadBroker:
    """A broker whose every call fails, like a Redis that went away."""

    def ping(self) -> bool:
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    def get_stats(self, pattern: str) -> list[Any]:
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    def get_stat(self, key: str) -> Any:
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")


class BrokenConnection:
    def cursor(self) -> Any:
        raise OperationalError("could not connect to server: Connection refused")


def _readyz() -> tuple[int, dict[str, Any]]:
    response = Client().get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_it_answers_healthz_with_200_without_credentials_or_queries(
    django_assert_num_queries: Any,
) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_is_ready_when_the_database_the_broker_and_a_cluster_answer(publish_cluster: Any) -> None:
    publish_cluster(Conf.WORKING)
    publish_cluster(Conf.IDLE)

    status, body = _readyz()

    assert status == 200, body
    assert body["status"] == "ok"
    assert body["failed"] == []
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["cluster"] == {"ok": True, "live": 2}


def test_it_answers_503_naming_the_cluster_when_no_cluster_reports() -> None:
    status, body = _readyz()

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["cluster"]
    assert body["checks"]["cluster"] == {"ok": False, "error": "no live cluster", "live": 0}
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_it_does_not_count_a_cluster_that_is_stopping_or_stopped(publish_cluster: Any) -> None:
    publish_cluster(Conf.STOPPING)
    publish_cluster(Conf.STOPPED)

    status, body = _readyz()

    assert status == 503
    assert body["failed"] == ["cluster"]


def test_it_answers_503_naming_the_database_when_it_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, publish_cluster: Any
) -> None:
    publish_cluster()
    monkeypatch.setattr(health, "connection", BrokenConnection())

    status, body = _readyz()

    assert status == 503
    assert body["failed"] == ["database"]
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_naming_the_database_when_its_connection_really_fails(tmp_path: Path) -> None:
    """The connection itself refused (no stand-in for it): /readyz says so, /healthz stays 200."""
    with database_unreachable(tmp_path):
        status, body = _readyz()
        live = Client().get("/healthz")

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"][0] == "database"  # with the ORM broker, the broker and cluster fail too
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert str(tmp_path) not in str(body) and "127.0.0.1" not in str(body)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


def test_it_answers_503_naming_the_broker_and_the_cluster_when_the_broker_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "get_broker", DeadBroker)

    status, body = _readyz()

    assert status == 503
    assert body["failed"] == ["broker", "cluster"]
    assert body["checks"]["broker"] == {"ok": False, "error": "ConnectionError"}
    assert body["checks"]["cluster"]["ok"] is False
    # Only the exception's class is shown: its message could name hosts and ports.
    assert "6379" not in str(body)


def test_it_names_every_failing_part_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "connection", BrokenConnection())
    monkeypatch.setattr(health, "get_broker", DeadBroker)

    status, body = _readyz()

    assert status == 503
    assert body["failed"] == ["database", "broker", "cluster"]


def test_it_answers_503_when_the_broker_cannot_even_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise ValueError("bad REDIS_URL")

    monkeypatch.setattr(health, "get_broker", broken)

    status, body = _readyz()

    assert status == 503
    assert body["failed"] == ["broker", "cluster"]
    assert body["checks"]["broker"] == {"ok": False, "error": "ValueError"}


def test_it_refuses_writes_to_the_probes() -> None:
    client = Client()

    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405
    assert client.head("/healthz").status_code == 200
