"""The OpenAPI document: served offline, and it matches what the API really answers."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import jsonschema
import pytest
from django.test import Client

from restores import services
from tests.conftest import Party

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "_enqueue", lambda func, *args: None)


@pytest.fixture
def document() -> dict[str, Any]:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return dict(response.json())


def _json_schema(node: Any, components: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema → strict JSON Schema: refs inlined, nullable typed, no extra keys."""
    if isinstance(node, list):
        return [_json_schema(n, components) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(copy.deepcopy(components[node["$ref"].rsplit("/", 1)[1]]), components)
    out = {k: _json_schema(v, components) for k, v in node.items() if k not in ("nullable", "readOnly")}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    elif out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out


def _validate(document: dict[str, Any], path: str, method: str, response: Any) -> None:
    operation = document["paths"][path][method]
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, f"{response.status_code} is not documented for {method.upper()} {path}"
    schema = declared["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), _json_schema(schema, document["components"]["schemas"]))


def test_it_serves_the_document_and_swagger_ui_without_a_cdn() -> None:
    client = Client()
    docs = client.get("/api/docs/")

    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "drf_spectacular_sidecar" in html  # the UI comes from our own static files
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert client.get("/api/schema/").status_code == 200


def test_it_describes_both_endpoints_basic_auth_and_the_idempotency_key(document: dict[str, Any]) -> None:
    assert set(document["paths"]) == {"/v3/bulk_restore", "/v3/bulk_restore_status"}
    post = document["paths"]["/v3/bulk_restore"]["post"]
    assert {"200", "202", "400", "401", "409", "422", "429"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    get = document["paths"]["/v3/bulk_restore_status"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"job_uuid", "number"}
    assert document["components"]["securitySchemes"]["basicAuth"] == {"type": "http", "scheme": "basic"}
    result = document["components"]["schemas"]["Result"]["properties"]
    assert list(result) == [
        "number",
        "status",
        "message",
        "status_code",
        "requires_identity_update",
        "needs_registration",
    ]


def test_it_matches_the_synchronous_answer(
    document: dict[str, Any], owner: Party, fake_multitel: Any
) -> None:
    response = owner.client.post(
        "/v3/bulk_restore", {"numbers": ["15551230111", "15551230112", "15551230113"]}, format="json"
    )

    assert response.status_code == 200
    _validate(document, "/v3/bulk_restore", "post", response)


def test_it_matches_the_queued_answer_and_the_status(document: dict[str, Any], owner: Party) -> None:
    queued = owner.client.post(
        "/v3/bulk_restore", {"numbers": [str(15551270001 + i * 100) for i in range(12)]}, format="json"
    )
    job_uuid = queued.json()["job_uuid"]
    status = owner.client.get("/v3/bulk_restore_status", {"job_uuid": job_uuid})
    filtered = owner.client.get("/v3/bulk_restore_status", {"job_uuid": job_uuid, "number": "15551270001"})

    assert (queued.status_code, status.status_code, filtered.status_code) == (202, 200, 200)
    _validate(document, "/v3/bulk_restore", "post", queued)
    _validate(document, "/v3/bulk_restore_status", "get", status)
    _validate(document, "/v3/bulk_restore_status", "get", filtered)


def test_it_matches_a_completed_status_with_a_webhook_error(
    document: dict[str, Any], owner: Party, fake_multitel: Any, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    body = {"numbers": ["15551230111", "15551230113"], "webhook_url": "http://127.0.0.1:9/hook"}
    sync = owner.client.post("/v3/bulk_restore", body, format="json")
    status = owner.client.get("/v3/bulk_restore_status", {"job_uuid": sync.json()["job_uuid"]})

    assert "webhook_error" in sync.json() and "webhook_error" in status.json()
    _validate(document, "/v3/bulk_restore", "post", sync)
    _validate(document, "/v3/bulk_restore_status", "get", status)


def test_it_matches_every_error_answer(document: dict[str, Any], owner: Party, outsider: Party) -> None:
    answers = [
        (
            "/v3/bulk_restore",
            "post",
            owner.client.post("/v3/bulk_restore", {"numbers": ["x"]}, format="json"),
        ),
        ("/v3/bulk_restore", "post", outsider.client.post("/v3/bulk_restore", {}, format="json")),
        (
            "/v3/bulk_restore_status",
            "get",
            owner.client.get("/v3/bulk_restore_status", {"job_uuid": str(uuid.uuid4())}),
        ),
        ("/v3/bulk_restore_status", "get", owner.client.get("/v3/bulk_restore_status", {"job_uuid": "nope"})),
    ]
    assert [a[2].status_code for a in answers] == [400, 401, 404, 400]
    for path, method, response in answers:
        declared = document["paths"][path][method]["responses"][str(response.status_code)]
        schema = _json_schema(
            declared["content"]["application/json"]["schema"], document["components"]["schemas"]
        )
        schema["additionalProperties"] = True  # errors may carry details beyond error and message
        jsonschema.validate(response.json(), schema)
