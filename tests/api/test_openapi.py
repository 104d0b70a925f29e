"""The OpenAPI document: served offline, it matches what the API really answers, and
``docs/api.md`` (the API's reference for tenants) matches it."""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.test import Client
from django.urls import reverse

from portal.api_errors import _CODES, ApiError
from tests.support.parties import Party

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"
# Where the code that answers /v3/* lives (scanned for the error codes it can produce).
APP_DIRS = ("accounts", "portal", "restores")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")
# The settings a tenant runs into; docs/api.md's limits table gives each one's default.
TENANT_LIMIT_SETTINGS = {
    "MAX_NUMBERS_PER_JOB",
    "SYNC_MAX_NUMBERS",
    "SYNC_DEADLINE",
    "IDEMPOTENCY_KEY_HOURS",
    "DATA_UPLOAD_MAX_MEMORY_SIZE",
    "API_THROTTLE_RATE",
    "AUTH_FAILURE_RATE",
    "AUTH_FAILURE_USERNAME_RATE",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_SYNC_TIMEOUT",
    "WEBHOOK_RETRY_SCHEDULE",
    "MULTITEL_MAX_ATTEMPTS",
    "UPSTREAM_BREAKER_FAILURES",
    "UPSTREAM_OUTAGE_MAX",
}


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    # Wherever the services keep their queue helper, it hands tasks to django-q2's async_task.
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)


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
    # Every script and stylesheet is our own: no address of another host (a CDN) in the page.
    # (Not a search for "cdn" in it: the page's random CSP nonce may spell it.)
    external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, flags=re.IGNORECASE)
    assert external == [], external
    assert not re.search(r"cdn\.|jsdelivr|unpkg|cdnjs", html, flags=re.IGNORECASE)
    assert client.get("/api/schema/").status_code == 200


def test_it_describes_both_endpoints_basic_auth_and_the_idempotency_key(document: dict[str, Any]) -> None:
    assert set(document["paths"]) == {"/v3/bulk_restore", "/v3/bulk_restore_status", "/v3/bulk_restore_jobs"}
    post = document["paths"]["/v3/bulk_restore"]["post"]
    assert {"200", "202", "400", "401", "409", "422", "429"} <= set(post["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    assert any(p["name"] == "dry_run" and p["in"] == "query" for p in post["parameters"])
    get = document["paths"]["/v3/bulk_restore_status"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"job_uuid", "number", "format"}
    assert set(get["responses"]["200"]["content"]) == {"application/json", "text/csv"}
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


# --- docs/api.md against the document ------------------------------------------------------


@pytest.fixture
def doc() -> str:
    return API_DOC.read_text(encoding="utf-8")


def _prose_lines(text: str) -> list[str]:
    """The lines of ``text``, those of fenced code blocks (fences included) blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def _section(text: str, title: str) -> str:
    """What follows the heading ``title`` up to the next heading of the same or a higher level."""
    lines, prose = text.splitlines(), _prose_lines(text)
    start = level = None
    for index, line in enumerate(prose):
        match = HEADING.match(line)
        if match is None:
            continue
        if start is None:
            if match.group(2) == title:
                start, level = index + 1, len(match.group(1))
        elif level is not None and len(match.group(1)) <= level:
            return "\n".join(lines[start:index])
    assert start is not None, f"docs/api.md has no heading {title!r}"
    return "\n".join(lines[start:])


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of ``text`` outside code blocks: rows of cells, the header first."""
    tables: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in [*_prose_lines(text), ""]:
        if line.lstrip().startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _table(text: str, *header: str) -> list[list[str]]:
    """The rows (without the header) of the first table of ``text`` with this header."""
    for table in _tables(text):
        if [cell.lower() for cell in table[0]] == [h.lower() for h in header]:
            return table[1:]
    raise AssertionError(f"docs/api.md has no table with the header {header}")


def _code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    return _json_schema(schema, document["components"]["schemas"])


def _property_names(schema: Any) -> set[str]:
    """Every property name of a resolved schema, nested objects and array items included."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            names |= {name} | _property_names(sub)
        for key in ("items", "additionalProperties"):
            names |= _property_names(schema.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for sub in schema.get(key, []):
                names |= _property_names(sub)
    return names


def _named_responses(document: dict[str, Any], *, success: bool) -> dict[str, Any]:
    """The response schemas of every operation by component name: 2xx ones, or the others."""
    named = {}
    for operation in _operations(document).values():
        for code, response in operation["responses"].items():
            if code.startswith("2") == success:
                schema = response["content"]["application/json"]["schema"]
                named[schema["$ref"].rsplit("/", 1)[1]] = _resolved(document, schema)
    return named


def _assert_in_schema_order(value: Any, schema: Any, where: str) -> None:
    """Object keys come in the order of the schema's properties, at every level."""
    for branch in schema.get("anyOf", [schema]):
        if isinstance(value, dict) and "properties" in branch:
            order = [name for name in branch["properties"] if name in value]
            assert [key for key in value if key in branch["properties"]] == order, f"key order of {where}"
            for key, item in value.items():
                if key in branch["properties"]:
                    _assert_in_schema_order(item, branch["properties"][key], f"{where}.{key}")
        elif isinstance(value, list) and "items" in branch:
            for index, item in enumerate(value):
                _assert_in_schema_order(item, branch["items"], f"{where}[{index}]")


def _error_table(doc: str) -> dict[str, str]:
    """docs/api.md's table of error codes: code → its HTTP status cell."""
    rows = _table(_section(doc, "Errors"), "code", "HTTP status", "when")
    table = {}
    for row in rows:
        spans = _code_spans(row[0])
        assert len(spans) == 1, f"one code per row of the error table, not {row[0]!r}"
        table[spans.pop()] = row[1]
    return table


def _literal(node: ast.expr) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


def _produced_error_codes() -> dict[str, set[int]]:
    """Every ``error`` code the code can answer with, and the HTTP statuses it comes with.

    The codes of ``portal.api_errors`` (its DRF mapping, its fallback, the codes it and the
    views pass to ``ApiError`` and ``error_body``), of ``SubmissionError`` (answered as an
    ``ApiError``) and of exception classes that set a ``default_code``. Found in the source,
    wherever a module lives, so that a new code cannot be left out of the table.
    """
    codes: dict[str, set[int]] = {code: {klass.status_code} for klass, code in _CODES.items()}
    codes.setdefault(ApiError.default_code, set()).add(ApiError.status_code)

    def add(code: Any, status: int | None) -> None:
        if isinstance(code, str):
            codes.setdefault(code, set()).update({status} if status else set())

    for directory in APP_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    for statement in node.body:
                        if isinstance(statement, ast.Assign) and any(
                            getattr(t, "id", None) == "default_code" for t in statement.targets
                        ):
                            klass = getattr(importlib.import_module(module), node.name, None)
                            add(_literal(statement.value), getattr(klass, "status_code", None))
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                keywords = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
                args = [_literal(arg) for arg in node.args]
                if name == "ApiError" and keywords.get("code"):
                    add(keywords["code"], keywords.get("status_code") or ApiError.status_code)
                elif name == "SubmissionError" and args:
                    add(args[0], ApiError.status_code)
                elif name == "error_body" and args:
                    add(args[0], None)
                elif name == "next" and module == "portal.api_errors" and len(args) == 2:
                    add(args[1], None)  # the code of an exception that has no code of its own
    return codes


def _settings_defaults() -> dict[str, Any]:
    """The default of every ``env.<type>("NAME", default=…)`` in portal/settings.py."""

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return value(node.left) * value(node.right)
        return ast.literal_eval(node)

    defaults = {}
    tree = ast.parse((ROOT / "portal" / "settings.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and getattr(node.func.value, "id", None) == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            for keyword in node.keywords:
                if keyword.arg == "default":
                    with contextlib.suppress(ValueError):  # not a literal: SECRET_KEY's is a name
                        defaults[node.args[0].value] = value(keyword.value)
    return defaults


def test_it_documents_every_operation_of_the_document_and_no_other(
    document: dict[str, Any], doc: str
) -> None:
    operations = set(_operations(document))
    prose = "\n".join(_prose_lines(doc))
    mentioned = set(re.findall(r"\b(GET|PUT|POST|DELETE|OPTIONS|HEAD|PATCH|TRACE) (/[\w/{}.-]*)", prose))

    assert mentioned == operations
    for method, path in operations:
        assert _section(doc, f"{method} {path}").strip()


def test_it_lists_under_each_endpoint_exactly_the_statuses_of_the_document(
    document: dict[str, Any], doc: str
) -> None:
    for (method, path), operation in _operations(document).items():
        responses = _section(_section(doc, f"{method} {path}"), "Responses")
        statuses = {row[0] for row in _table(responses, "status", "when", "body")}

        assert statuses == set(operation["responses"]), f"{method} {path}"


def test_it_names_every_field_and_parameter_of_the_document_in_a_table(
    document: dict[str, Any], doc: str
) -> None:
    def first_cells(text: str) -> set[str]:
        return {span for table in _tables(text) for row in table[1:] for span in _code_spans(row[0])}

    response_fields: set[str] = set()
    for (method, path), operation in _operations(document).items():
        section = _section(doc, f"{method} {path}")
        inputs = {parameter["name"] for parameter in operation.get("parameters", [])}
        for content in operation.get("requestBody", {}).get("content", {}).values():
            inputs |= _property_names(_resolved(document, content["schema"]))
        for response in operation["responses"].values():
            response_fields |= _property_names(
                _resolved(document, response["content"]["application/json"]["schema"])
            )

        assert inputs - first_cells(section) == set(), f"{method} {path}: undocumented inputs"
    assert response_fields - first_cells(doc) == set(), "undocumented response fields"
    payload_fields = first_cells(_section(doc, "Payload fields"))
    assert payload_fields - response_fields == set(), "docs/api.md describes fields the API does not have"


def test_it_shows_examples_that_the_document_accepts_in_its_key_order(
    document: dict[str, Any], doc: str
) -> None:
    candidates = _named_responses(document, success=True)
    success_names = set(candidates)
    for operation in _operations(document).values():
        for content in operation.get("requestBody", {}).get("content", {}).values():
            candidates[content["schema"]["$ref"].rsplit("/", 1)[1]] = _resolved(document, content["schema"])
    (error_schema,) = _named_responses(document, success=False).values()  # one shape for every error
    error_schema = {**error_schema, "additionalProperties": True}
    error_codes = set(_error_table(doc))
    shown: set[str] = set()

    blocks = re.findall(r"^```json\n(.*?)^```", doc, flags=re.M | re.S)
    assert blocks
    for block in blocks:
        example = json.loads(block)
        if "error" in example:
            jsonschema.validate(example, error_schema)
            assert list(example)[:2] == ["error", "message"]
            assert example["error"] in error_codes
            continue
        matches = []
        for name, schema in candidates.items():
            try:
                jsonschema.validate(example, schema)
            except jsonschema.ValidationError:
                continue
            matches.append(name)
            _assert_in_schema_order(example, schema, name)
        assert matches, f"an example in docs/api.md fits no schema of the document:\n{block}"
        shown.update(matches)
    assert success_names - shown == set(), "a success answer without an example in docs/api.md"


def test_it_lists_every_error_code_the_api_can_produce_with_its_status(doc: str) -> None:
    produced = _produced_error_codes()
    table = _error_table(doc)

    assert set(produced) - set(table) == set(), "error codes missing from docs/api.md's table"
    assert set(table) - set(produced) == set(), "docs/api.md lists error codes the API never gives"
    for code, statuses in produced.items():
        for status in statuses:
            assert str(status) in re.findall(r"\d{3}", table[code]), f"{code} is answered with {status}"


def test_it_gives_each_limit_with_the_default_of_its_setting(document: dict[str, Any], doc: str) -> None:
    defaults = _settings_defaults()
    rows = _table(_section(doc, "Request limits"), "limit", "default", "setting")
    documented = set()
    for _limit, default, setting in rows:
        names = _code_spans(setting) & set(defaults)
        if not names:
            continue
        assert len(names) == 1, f"one setting per row of the limits table, not {setting!r}"
        name = names.pop()
        documented.add(name)
        expected = defaults[name]
        if isinstance(expected, str):
            assert expected in default, name
        else:
            shown = re.search(r"\d[\d,_]*(?:\.\d+)?", default)
            assert shown is not None and float(re.sub("[,_]", "", shown.group())) == float(expected), name

    assert TENANT_LIMIT_SETTINGS - documented == set(), "limits missing from docs/api.md"
    post = document["paths"]["/v3/bulk_restore"]["post"]
    reference = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    key = next(p["schema"] for p in post["parameters"] if p["name"] == "Idempotency-Key")
    low, high = re.findall(r"\{(\d+),(\d+)\}", body["properties"]["numbers"]["items"]["pattern"])[0]
    fixed = {
        "webhook_url": str(body["properties"]["webhook_url"]["maxLength"]),
        "Idempotency-Key": str(key["maxLength"]),
        "numbers": f"{low} to {high}",
    }
    for field, value in fixed.items():
        assert any(field in _code_spans(row[0]) and value in row[1] for row in rows), (field, value)


def test_it_links_only_to_anchors_it_defines(doc: str) -> None:
    anchors = re.findall(r'<a id="([\w-]+)"></a>', doc)
    links = set(re.findall(r"\]\(#([\w-]+)\)", doc))

    assert len(anchors) == len(set(anchors)), "an anchor is defined twice"
    assert links - set(anchors) == set()


def test_it_points_to_the_served_document_and_swagger_ui(doc: str) -> None:
    for name in ("api-schema", "api-docs"):
        assert f"`{reverse(name)}`" in doc
