"""The one error shape of /v3/* (docs/api.md#errors): 401, 403, 404, 405 and 500."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from accounts.services import api_credential_create, api_credential_revoke
from portal.api_errors import json_404, json_500
from restores.models import Job
from tests.support.jobs import stored
from tests.support.numbers import number

BODY = json.dumps({"numbers": [number(111)]})


def post(client: APIClient, body: str = BODY) -> Any:
    return client.post("/v3/bulk_restore", data=body, content_type="application/json")


def assert_error(response: Any, status_code: int, code: str) -> dict[str, Any]:
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def basic(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


def client_with(authorization: str | None) -> APIClient:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


# --- 401 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic("owner-api", "wrong-secret"),
        basic("nobody", "owner-secret-value-for-tests"),
        basic("owner-api", ""),
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer owner-secret-value-for-tests",
    ],
)
def test_it_answers_401_with_the_error_shape_and_www_authenticate(owner, authorization):
    before = stored()
    client = client_with(authorization)

    for response in (post(client), client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())})):
        assert_error(response, 401, "authentication_failed")
        assert response["WWW-Authenticate"].startswith("Basic")
        assert "owner-secret-value-for-tests" not in response.content.decode()
    assert stored() == before


def test_it_answers_401_to_an_outsider(outsider):
    response = post(outsider.client)

    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Basic")
    assert Job.objects.count() == 0


def test_it_answers_401_to_a_revoked_credential_and_creates_no_job(owner, fake_multitel):
    credential = owner.tenant.api_credentials.get()
    assert post(owner.client).status_code == 200
    jobs = Job.objects.count()

    api_credential_revoke(credential=credential)
    response = post(owner.client)

    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Basic")
    assert Job.objects.count() == jobs
    assert fake_multitel.state.stats()["calls_total"] == 1


def test_it_authenticates_before_checking_the_method(outsider):
    response = outsider.client.put("/v3/bulk_restore", data=BODY, content_type="application/json")

    assert_error(response, 401, "authentication_failed")


# --- 403 --------------------------------------------------------------------------------


def test_it_answers_403_to_a_disabled_tenant_and_creates_no_job(owner, fake_multitel):
    owner.tenant.is_active = False
    owner.tenant.save()
    before = stored()

    response = post(owner.client)

    body = assert_error(response, 403, "tenant_disabled")
    assert "disabled" in body["message"]
    assert stored() == before
    assert fake_multitel.state.stats()["calls_total"] == 0


def test_it_answers_403_to_a_disabled_tenant_polling_its_own_job(owner, fake_multitel):
    job_uuid = post(owner.client).json()["job_uuid"]
    owner.tenant.is_active = False
    owner.tenant.save()

    response = owner.client.get("/v3/bulk_restore_status", {"job_uuid": job_uuid})

    assert_error(response, 403, "tenant_disabled")
    assert job_uuid not in response.content.decode()


def test_it_lets_a_reenabled_tenant_in_again(owner, fake_multitel):
    owner.tenant.is_active = False
    owner.tenant.save()
    assert post(owner.client).status_code == 403

    owner.tenant.is_active = True
    owner.tenant.save()

    assert post(owner.client).status_code == 200


# --- 404 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v3", "/v3/", "/v3/nope", "/v3/bulk_restore/", "/v3/bulk_restore_status/", "/v3/restore/15551230111"],
)
def test_it_answers_json_404_for_an_unknown_url_under_v3(owner, path):
    for client in (owner.client, APIClient()):
        response = client.get(path)
        body = assert_error(response, 404, "not_found")
        assert set(body) == {"error", "message"}
        response = client.post(path, data=BODY, content_type="application/json")
        assert_error(response, 404, "not_found")
    assert Job.objects.count() == 0


def test_it_keeps_html_404_outside_the_api(rf: RequestFactory):
    response = json_404(rf.get("/somewhere-else"))

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- 405 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v3/bulk_restore"),
        ("delete", "/v3/bulk_restore"),
        ("post", "/v3/bulk_restore_status"),
        ("put", "/v3/bulk_restore_status"),
    ],
)
def test_it_answers_405_with_the_error_shape(owner, method, path):
    response = getattr(owner.client, method)(path)

    body = assert_error(response, 405, "method_not_allowed")
    assert method.upper() in body["message"]
    assert response["Allow"]


# --- 413 and oversized forms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"numbers": [number(100 + i) for i in range(20)]})),
        ("application/x-www-form-urlencoded", urlencode([("numbers", number(100 + i)) for i in range(20)])),
    ],
)
def test_it_answers_413_to_a_body_over_the_upload_limit(owner, settings, content_type, body):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    before = stored()

    response = owner.client.post("/v3/bulk_restore", data=body, content_type=content_type)

    assert_error(response, 413, "request_too_large")
    assert stored() == before


def test_it_answers_400_to_a_form_with_too_many_fields(owner, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    before = stored()

    urlencoded = owner.client.post(
        "/v3/bulk_restore",
        data=urlencode([("numbers", number(100 + i)) for i in range(6)]),
        content_type="application/x-www-form-urlencoded",
    )
    multipart = owner.client.post("/v3/bulk_restore", {"numbers": [number(100 + i) for i in range(6)]})

    assert_error(urlencoded, 400, "bad_request")
    assert_error(multipart, 400, "bad_request")
    assert stored() == before


# --- 500 --------------------------------------------------------------------------------


def test_it_answers_500_as_json_without_internals(owner, monkeypatch):
    def explode(**kwargs: Any) -> None:
        raise RuntimeError('SELECT secret FROM "accounts_tenant" -- mt-owner-password')

    monkeypatch.setattr("restores.selectors.job_get_for_tenant", explode)

    response = owner.client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())})

    body = assert_error(response, 500, "internal_error")
    assert set(body) == {"error", "message"}
    text = response.content.decode()
    for leak in ("SELECT", "mt-owner-password", "RuntimeError", "Traceback", "explode"):
        assert leak not in text


def test_it_answers_a_500_outside_drf_as_json_under_v3(rf: RequestFactory):
    response = json_500(rf.get("/v3/bulk_restore"))

    assert response.status_code == 500
    assert json.loads(response.content) == {
        "error": "internal_error",
        "message": "Something went wrong on our side; it has been logged.",
    }


def test_it_authenticates_a_second_credential_of_the_same_tenant(owner, fake_multitel):
    issued = api_credential_create(tenant=owner.tenant)

    response = post(client_with(basic(issued.credential.username, issued.secret)))

    assert response.status_code == 200
    assert Job.objects.get(uuid=response.json()["job_uuid"]).credential == issued.credential
