"""Hostile input never yields a 500 (docs/api.md).

Hypothesis throws random and malicious requests at ``POST /v3/bulk_restore`` and
``GET /v3/bulk_restore_status``. Whatever comes in, the answer is a 4xx in the
API's error shape (``error`` and ``message`` strings) and nothing is stored, or,
when the input happens to be valid, a well-formed 200/202 that stored exactly
one job.

No traffic leaves the process except to 127.0.0.1: upstream calls go to the
closed loopback port of ``tests/api/conftest.py`` (checked below), tasks are not
enqueued, webhook deliveries are replaced by a stub, and name resolution of
anything but loopback fails. The database is not rolled back between Hypothesis
examples, so each example compares the stored rows before and after itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from portal.wsgi import sanitize_environ
from restores.clients import webhook_sender as webhooks
from restores.models import Job
from tests.support.contract import JOB_KEYS, QUEUED_KEYS

POST_URL = "/v3/bulk_restore"
STATUS_URL = "/v3/bulk_restore_status"
NUMBER_RE = re.compile(r"[0-9]{7,15}")
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
FINAL_KEYS = JOB_KEYS
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# A quick pass by default; FUZZ_EXAMPLES=1000 for a long hunt.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
FEW = hsettings(FUZZ, max_examples=max(5, EXAMPLES // 6))


# --- The sandbox ----------------------------------------------------------------------


class GuardedHandler:
    """The test client's handler behind the same environ guard that ``portal.wsgi`` puts in
    front of Django for gunicorn."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, environ: dict[str, Any]) -> Any:
        return self.inner(sanitize_environ(environ))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Sandbox:
    client: Client
    auth: str
    enqueued: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    blocked_lookups: list[str] = field(default_factory=list)

    def post(self, body: bytes, content_type: str, **extra: Any) -> Any:
        return self.client.generic("POST", POST_URL, data=body, content_type=content_type, **extra)


@pytest.fixture
def sandbox(owner: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    # tests/api/conftest.py's autouse fixture points the upstream at a closed loopback port.
    upstream = urlsplit(settings.MULTITEL_BASE_URL)
    assert upstream.hostname == "127.0.0.1", settings.MULTITEL_BASE_URL
    settings.MULTITEL_MAX_ATTEMPTS = 1  # connection refused once, no backoff: valid sync jobs are fast
    settings.MULTITEL_CONNECT_TIMEOUT = 1
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    # Rate limits would turn most examples into 429s and stop exercising the view.
    settings.API_THROTTLE_RATE = "off"
    settings.AUTH_FAILURE_RATE = "off"
    settings.AUTH_FAILURE_USERNAME_RATE = "off"

    box = Sandbox(client=Client(), auth=owner.client._credentials["HTTP_AUTHORIZATION"])
    box.client.handler = GuardedHandler(box.client.handler)
    box.client.defaults["HTTP_AUTHORIZATION"] = box.auth

    def no_queue(*args: Any, **kwargs: Any) -> None:
        box.enqueued.append(args)

    def no_webhook(*, url: str, timeout: float, **kwargs: Any) -> webhooks.DeliveryResult:
        box.deliveries.append(url)
        return webhooks.DeliveryResult(
            delivered=False,
            started_at=timezone.now(),
            duration_ms=0,
            http_status=None,
            error="Could not resolve host: blocked.in.tests",
            response_excerpt="",
        )

    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            box.blocked_lookups.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "blocked in tests: loopback only")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr("django_q.tasks.async_task", no_queue)
    monkeypatch.setattr(webhooks, "deliver", no_webhook)
    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield box
    assert box.blocked_lookups == [], "something tried to resolve a non-loopback host"


def stored() -> dict[str, int]:
    """Rows of every model of the ``restores`` app (jobs, results, attempts, deliveries, keys...)."""
    return {m._meta.label: m.objects.count() for m in apps.get_app_config("restores").get_models()}


# --- Checking an answer ------------------------------------------------------------------


def assert_error_shape(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def expected_numbers(payload: Any) -> list[str] | None:
    """The numbers a valid submission stands for, by docs/api.md#bulk-restore-request; None when it is not
    plainly valid (this oracle is strict: only ASCII spaces, tabs and CRs around lines)."""
    if not isinstance(payload, dict):
        return None
    numbers, text = payload.get("numbers"), payload.get("numbers_text")
    if numbers is not None and not (
        isinstance(numbers, list) and all(isinstance(n, str) and NUMBER_RE.fullmatch(n) for n in numbers)
    ):
        return None
    if text is not None and not isinstance(text, str):
        return None
    lines = [line.strip(" \t\r") for line in (text or "").split("\n")]
    if any(line and not NUMBER_RE.fullmatch(line) for line in lines):
        return None
    unique = list(dict.fromkeys([*(numbers or []), *(line for line in lines if line)]))
    return unique if 0 < len(unique) <= django_settings.MAX_NUMBERS_PER_JOB else None


def check_answer(response: Any, before: dict[str, int], payload: Any = None) -> dict[str, Any]:
    """The invariant of every answer: no 5xx; a 4xx is an error and stored nothing; a 200 or
    202 is a well-formed job, stored once."""
    status = response.status_code
    assert status < 500, f"{status}: {response.content[:300]!r}"
    body = json.loads(response.content)
    if status >= 400:
        assert_error_shape(response)
        assert stored() == before, f"a {status} ({body['error']}) stored something"
        return body

    assert status in (200, 202), status
    assert response["Content-Type"] == "application/json"
    assert list(body) == (FINAL_KEYS if status == 200 else QUEUED_KEYS) + (
        ["webhook_error"] if "webhook_error" in body else []
    )
    job = Job.objects.get(uuid=body["job_uuid"])
    total = body["total_numbers"]
    assert isinstance(total, int) and total == job.total_numbers
    assert (total <= django_settings.SYNC_MAX_NUMBERS) == (status == 200)
    assert body["webhook_url"] is None or isinstance(body["webhook_url"], str)
    after = stored()
    assert after["restores.Job"] == before["restores.Job"] + 1
    assert after["restores.NumberResult"] == before["restores.NumberResult"] + total
    want = expected_numbers(payload)
    if status == 200:
        results = body["results"]
        numbers = [r["number"] for r in results]
        assert body["status"] == "completed" and len(results) == total
        assert all(isinstance(n, str) and NUMBER_RE.fullmatch(n) for n in numbers)
        assert len(set(numbers)) == len(numbers)
        assert body["success_count"] == sum(r["status"] == "success" for r in results)
        assert body["failure_count"] == sum(r["status"] == "failed" for r in results)
        assert body["success_count"] + body["failure_count"] == total
        assert all(TIMESTAMP_RE.fullmatch(body[k]) for k in ("created_at", "started_at", "completed_at"))
        if want is not None:
            assert numbers == want
    else:
        assert body["status"] == "pending" and isinstance(body["message"], str)
        if want is not None:
            assert total == len(want)
            assert list(job.results.order_by("position").values_list("number", flat=True)) == want
    return body


# --- Strategies ---------------------------------------------------------------------------

# Any code point, lone surrogates included, plus the usual troublemakers.
CHARS = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(categories=["Cs"]),
    st.sampled_from("\x00\n\r\t \x0b\x0c\x1c\x85\u2028\u2029\ufeff\ufffd+-0123456789٣０"),
)


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(CHARS, max_size=max_size).map("".join)  # st.text() would drop lone surrogates


TEXT = text(40)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**6, max_value=10**15),  # a number that looks like a phone number
    st.floats(),  # NaN and Infinity included: not JSON, must be refused
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(TEXT, children, max_size=6),
    max_leaves=25,
)
VALID_NUMBER = st.from_regex(r"\A[0-9]{7,15}\Z")
NUMBER_LIKE = st.one_of(
    VALID_NUMBER,
    VALID_NUMBER,
    st.from_regex(r"\A[0-9]{0,6}\Z") | st.from_regex(r"\A[0-9]{16,40}\Z"),
    VALID_NUMBER.map(lambda n: "+" + n),
    VALID_NUMBER.map(lambda n: f"{n[:3]}-{n[3:]}"),
    VALID_NUMBER.map(lambda n: f" {n}\t"),
    VALID_NUMBER.map(lambda n: n.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))),
    VALID_NUMBER.map(lambda n: n.translate(str.maketrans("0123456789", "０１２３４５６７８９"))),
    VALID_NUMBER.map(lambda n: n + "\x00"),
    st.integers(min_value=10**6, max_value=10**15),
    TEXT,
    SCALARS,
)
NEWLINES = st.sampled_from(["\n", "\r\n", "\r", "\n\n", " \n ", "\u2028", "\x85"])
NUMBERS_TEXT = st.one_of(
    st.tuples(st.lists(NUMBER_LIKE.filter(lambda v: isinstance(v, str)), max_size=15), NEWLINES).map(
        lambda t: t[1].join(t[0])
    ),
    st.lists(VALID_NUMBER, min_size=1, max_size=25).map("\n".join),
    TEXT,
    JSON_VALUES,
)
HOSTS = st.sampled_from(
    [
        "example.com",
        "hooks.example.net",
        "127.0.0.1",
        "10.0.0.7",
        "169.254.169.254",
        "0x7f000001",
        "2130706433",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::a00:1]",
        "8.8.8.8",
        "[2001:4860:4860::8888]",
        "xn--nxasmq6b.example",
        "ex ample.com",
        "",
        "exa\x00mple.com",
        "ëxample.com",
    ]
) | text(15)
WEBHOOK_URLS = st.one_of(
    st.none(),
    st.just(""),
    st.builds(
        lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}/{path}",
        st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", "file", ""]),
        st.sampled_from(["", "user:pass@", "user@", ":@"]),
        HOSTS,
        st.sampled_from(["", ":0", ":80", ":65535", ":65536", ":99999", ":-1", ":x"])
        | st.integers(0, 70000).map(lambda p: f":{p}"),
        TEXT,
    ),
    st.integers(2040, 2100).map(lambda n: "https://example.com/" + "a" * (n - 20)),
    TEXT,
    JSON_VALUES,
)


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    """An object with the contract's field names (each present or not) and random values."""
    payload: dict[str, Any] = {}
    if draw(st.booleans()):
        payload["numbers"] = draw(
            st.one_of(
                st.lists(NUMBER_LIKE, max_size=14),
                st.lists(VALID_NUMBER, min_size=1, max_size=30),
                JSON_VALUES,
            )
        )
    if draw(st.booleans()):
        payload["numbers_text"] = draw(NUMBERS_TEXT)
    if draw(st.booleans()):
        payload["webhook_url"] = draw(WEBHOOK_URLS)
    payload.update(draw(st.dictionaries(TEXT, JSON_VALUES, max_size=3)))
    return payload


def json_bytes(value: Any, ensure_ascii: bool) -> bytes:
    # Lone surrogates become \\udXXX escapes (ensure_ascii) or invalid UTF-8 bytes (surrogatepass).
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def is_strict_json(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-8 JSON without NaN, Infinity or lone surrogates."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=refuse)
        # Escaped lone surrogates parse, but no UTF-8 text can hold them: refused too.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except ValueError:
        return False
    return True


def form_bytes(payload: dict[str, Any]) -> bytes:
    pairs = []
    for key, value in payload.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = item if isinstance(item, str) else json.dumps(item)
            pairs.append(
                quote(key.encode("utf-8", "surrogatepass"), safe="")
                + "="
                + quote(text.encode("utf-8", "surrogatepass"), safe="")
            )
    return "&".join(pairs).encode()


def multipart_bytes(payload: dict[str, Any], boundary: str = "fuzzboundary") -> bytes:
    parts = []
    for key, value in payload.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = item if isinstance(item, str) else json.dumps(item)
            name = key.replace('"', "").replace("\r", "").replace("\n", "")
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode(
                    "utf-8", "surrogatepass"
                )
                + text.encode("utf-8", "surrogatepass")
                + b"\r\n"
            )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


# --- POST /v3/bulk_restore ---------------------------------------------------------------


@FUZZ
@given(value=JSON_VALUES, ensure_ascii=st.booleans())
@example(value={"numbers": ["\ud800"]}, ensure_ascii=True)
@example(value={"numbers_text": "1555\udfff0111"}, ensure_ascii=True)
@example(value={"numbers": ["15551230111"], "webhook_url": "https://example.com/\ud800"}, ensure_ascii=True)
@example(value={"numbers": [float("nan")]}, ensure_ascii=True)
def test_it_never_answers_500_to_any_json_value(sandbox: Sandbox, value: Any, ensure_ascii: bool) -> None:
    before = stored()

    response = sandbox.post(json_bytes(value, ensure_ascii), "application/json")

    body = check_answer(response, before, value)
    if not isinstance(value, dict):
        assert (response.status_code, body["error"]) == (400, "invalid_body")


@FUZZ
@given(payload=submissions(), encoding=st.sampled_from(["json", "json-ascii", "form", "multipart"]))
@example(payload={"numbers": ["15551230111"], "webhook_url": "http://8.8.8.8/\x00"}, encoding="json")
@example(payload={"numbers": ["15551230111"], "webhook_url": "http://8.8.8.8/\x00"}, encoding="form")
@example(payload={"numbers": [str(15551230100 + i) for i in range(11)]}, encoding="json")
@example(payload={"numbers": ["15551230111"]}, encoding="multipart")
def test_it_never_answers_500_to_objects_with_the_real_field_names(
    sandbox: Sandbox, payload: dict[str, Any], encoding: str
) -> None:
    before = stored()
    if encoding.startswith("json"):
        raw = json_bytes(payload, encoding == "json-ascii")
        response = sandbox.post(raw, "application/json")
        check_answer(response, before, payload)
        if response.status_code >= 400 and is_strict_json(raw):
            # Plainly valid numbers without a webhook are never refused.
            assert expected_numbers(payload) is None or payload.get("webhook_url") not in (None, "")
    elif encoding == "form":
        check_answer(sandbox.post(form_bytes(payload), "application/x-www-form-urlencoded"), before)
    else:
        response = sandbox.post(multipart_bytes(payload), "multipart/form-data; boundary=fuzzboundary")
        check_answer(response, before)


@FEW
@given(
    extra=st.integers(min_value=1, max_value=256 * 1024),
    kind=st.sampled_from(["json", "json-numbers", "json-garbage", "form", "form-garbage", "multipart"]),
)
@example(extra=1, kind="json")
@example(extra=1, kind="multipart")
def test_it_answers_413_to_a_body_over_the_upload_limit(sandbox: Sandbox, extra: int, kind: str) -> None:
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    size = limit + extra
    numbers = [f"1{i:010d}" for i in range(0, 20000, 2)]  # 10000 valid numbers, about 120 kB
    if kind.endswith("garbage"):
        content_type = "application/json" if kind.startswith("json") else "application/x-www-form-urlencoded"
        body = (b"\xff{[\x00%" * (size // 5 + 1))[:size]
    elif kind.startswith("json"):
        content_type = "application/json"
        head = json.dumps({"numbers": numbers if kind == "json-numbers" else [], "pad": ""})[:-2]
        body = (head + "x" * (size - len(head) - 2) + '"}').encode()
    elif kind == "form":
        content_type = "application/x-www-form-urlencoded"
        head = "numbers_text=" + "%0A".join(numbers) + "&pad="
        body = (head + "x" * (size - len(head))).encode()
    else:
        # Django limits a multipart body by the size of its fields' values (the boundaries and
        # part headers do not count): here the values alone are over the limit.
        content_type = "multipart/form-data; boundary=fuzzboundary"
        text = "\n".join(numbers)
        body = multipart_bytes({"numbers_text": text, "pad": "x" * (size - len(text))})
    assert len(body) > limit
    before = stored()

    response = sandbox.post(body, content_type)

    assert_error_shape(response)
    assert (response.status_code, response.json()["error"]) == (413, "request_too_large")
    assert stored() == before


@FEW
@given(
    depth=st.integers(min_value=500, max_value=100_000),
    opener=st.sampled_from(["[", '{"a":', '{"numbers":[', "[{}, ["]),
    wrap=st.sampled_from(["", "numbers", "numbers_text", "webhook_url", "an_unknown_field"]),
)
@example(depth=5000, opener="[", wrap="")
@example(depth=5000, opener="[", wrap="numbers")
@example(depth=950, opener="[", wrap="numbers")
def test_it_refuses_deeply_nested_json_with_400(sandbox: Sandbox, depth: int, opener: str, wrap: str) -> None:
    closer = {"[": "]", '{"a":': "}", '{"numbers":[': "]}", "[{}, [": "]]"}[opener]
    nested = opener * depth + "1" + closer * depth
    valid = '"numbers": ["15551230111"]' if wrap == "numbers_text" else '"numbers_text": "15551230111"'
    raw = nested if not wrap else f'{{"{wrap}": {nested}, {valid}}}'
    before = stored()

    response = sandbox.post(raw.encode(), "application/json")

    body = check_answer(response, before)
    if wrap != "an_unknown_field":  # unknown fields are ignored: the job may be accepted
        assert response.status_code == 400, body


INVALID_UTF8 = st.sampled_from(
    [
        b"\xff",
        b"\xfe\xff",
        b"\xc0\x80",  # overlong NUL
        b"\xc3",  # truncated sequence
        b"\xe2\x82",
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\x80",
    ]
)


@FUZZ
@given(
    template=st.sampled_from(
        [
            b'{"numbers": ["1555123%s0111"]}',
            b'{"numbers_text": "15551230111\\n%s"}',
            b'{"numbers": ["15551230111"], "webhook_url": "https://example.com/%s"}',
            b'{"numbers": ["15551230111"], "%s": 1}',
            b"%s",
            b'{"numbers": ["15551230111"]}%s',
            b"numbers=1555123%s0111",
            b"numbers=15551230111&webhook_url=https%%3A%%2F%%2Fexample.com%%2F%s",
            b"numbers=15551230111&junk=%s",
        ]
    ),
    bad=st.lists(INVALID_UTF8, min_size=1, max_size=3).map(b"".join) | st.binary(max_size=64),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
        ]
    ),
)
def test_it_never_answers_500_to_invalid_utf8(
    sandbox: Sandbox, template: bytes, bad: bytes, content_type: str
) -> None:
    before = stored()

    response = sandbox.post(template % bad, content_type)

    check_answer(response, before)


# What gunicorn lets through in a header value (it answers 400 itself to NUL, CR, LF or bytes >= 0x80).
HEADER_TEXT = st.text("".join(map(chr, range(0x20, 0x7F))) + "\t", max_size=12)
TOKEN = st.text(string.ascii_letters + string.digits + "!#$&^_.+-", min_size=1, max_size=12)
CHARSETS = (
    st.sampled_from(
        [
            "utf-8",
            "UTF-8",
            "utf8",
            "latin-1",
            "ascii",
            "utf-16",
            "utf-32",
            "cp500",
            "idna",
            "punycode",
            "unicode_escape",
            "raw_unicode_escape",
            "rot13",
            "zlib",
            "base64",
            "hex",
            "uu",
            "bz2",
            "no-such-charset",
            "",
            '"utf-8"',
        ]
    )
    | HEADER_TEXT
)


@st.composite
def content_types(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(
            [
                "application/json",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "text/plain",
                "application/xml",
                "application/octet-stream",
                "application/merge-patch+json",
                "*/*",
                "application/*",
                "",
                "json",
                "application/json/extra",
            ]
        )
        | st.builds(lambda a, b: f"{a}/{b}", TOKEN, TOKEN)
        | HEADER_TEXT
    )
    params = draw(
        st.lists(
            st.one_of(
                CHARSETS.map(lambda c: f"charset={c}"),
                st.sampled_from(["boundary=fuzzboundary", "boundary=", "boundary=other", 'boundary="q"']),
                st.builds(lambda k, v: f"{k}={v}", TOKEN, HEADER_TEXT),
            ),
            max_size=3,
        )
    )
    return "; ".join([kind, *params])


@FUZZ
@given(
    content_type=content_types(),
    body=st.one_of(
        st.sampled_from(
            [
                json.dumps({"numbers": ["15551230111", "15551230113"]}).encode(),
                json.dumps({"numbers": [str(15551230200 + i) for i in range(12)]}).encode(),
                b"numbers=15551230111&numbers=15551230113",
                multipart_bytes({"numbers": ["15551230111"]}),
                b"",
            ]
        ),
        st.binary(max_size=200),
    ),
    query=st.sampled_from(["", "?job_uuid=%41", "?x=%ff%fe", "?a=%"]),
)
@example(content_type="application/json; charset=rot13", body=b'{"numbers": ["15551230111"]}', query="")
@example(content_type="text/plain; charset=rot13", body=b"", query="?job_uuid=%41")
def test_it_never_answers_500_to_odd_content_types(
    sandbox: Sandbox, content_type: str, body: bytes, query: str
) -> None:
    before = stored()

    response = sandbox.client.generic("POST", POST_URL + query, data=body, content_type=content_type)

    check_answer(response, before)


# --- GET /v3/bulk_restore_status -----------------------------------------------------------

OWN_JOB, OTHER_JOB = "{own-job}", "{other-tenant-job}"
UUID_FORMS = st.builds(
    lambda u, form: form(u),
    st.uuids(),
    st.sampled_from(
        [
            str,
            lambda u: str(u).upper(),
            lambda u: u.hex,
            lambda u: "{" + str(u) + "}",
            lambda u: "urn:uuid:" + str(u),
            lambda u: str(u)[:-1],
            lambda u: str(u) + "0",
            lambda u: " " + str(u),
            lambda u: str(u) + "\x00",
        ]
    ),
)
QUERY_VALUES = st.one_of(
    st.sampled_from([OWN_JOB, OTHER_JOB, OWN_JOB.upper(), "15551230111", "15551230113", "5551230111"]),
    UUID_FORMS,
    st.from_regex(r"\A[0-9]{1,40}\Z"),
    st.sampled_from(
        ["", "%", "%%", "%zz", "%ff%fe", "%00", "%C0%80", "%ED%A0%80", "%F4%90%80%80", "+", "&", "="]
    ),
    text(30),
)
QUERY_KEYS = st.sampled_from(
    ["job_uuid", "job_uuid", "number", "number", "JOB_UUID", "job_uuid[]", "number[]", "", "%6Aob_uuid"]
) | text(10)


def _latin1(text: str) -> str:
    """A query string as WSGI hands it over: the raw bytes, decoded as latin-1."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES, st.booleans()), max_size=6))
    parts = []
    for key, value, encoded in pairs:
        if encoded:
            value = quote(value.encode("utf-8", "surrogatepass"), safe="%{}")
        parts.append(f"{key}={value}" if draw(st.booleans()) or not value else key)
    separator = draw(st.sampled_from(["&", "&", ";", "&&", "&amp;"]))
    raw = separator.join(parts)
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=40)).decode("latin-1") + raw
    return raw


@pytest.fixture
def status_jobs(sandbox: Sandbox, second: Any) -> dict[str, str]:
    """A finished sync job of the owner and a queued job of the second tenant."""
    own = sandbox.post(json_bytes({"numbers": ["15551230111", "15551230113"]}, True), "application/json")
    assert own.status_code == 200, own.content
    other = second.client.post(
        POST_URL, {"numbers": [str(15551230200 + i) for i in range(11)]}, format="json"
    )
    assert other.status_code == 202, other.content
    return {OWN_JOB: own.json()["job_uuid"], OTHER_JOB: other.json()["job_uuid"]}


@FUZZ
@given(raw=query_strings(), content_type=st.none() | content_types())
@example(raw="job_uuid={own-job}&number=15551230113", content_type=None)
@example(raw="job_uuid={own-job}&job_uuid=nope", content_type=None)
@example(raw="job_uuid=nope&job_uuid={own-job}&number=1&number=15551230111", content_type=None)
@example(raw="job_uuid={other-tenant-job}", content_type=None)
@example(raw="job_uuid={own-job}&number=%00", content_type=None)
@example(raw="job_uuid=%ff%fe%00", content_type=None)
@example(raw="job_uuid=%41", content_type="text/plain; charset=rot13")
def test_it_never_answers_500_to_odd_status_queries(
    sandbox: Sandbox, status_jobs: dict[str, str], raw: str, content_type: str | None
) -> None:
    query = raw
    for placeholder, job_uuid in status_jobs.items():
        query = query.replace(placeholder, job_uuid).replace(placeholder.upper(), job_uuid.upper())
    extra = {"QUERY_STRING": _latin1(query)}
    if content_type is not None:
        extra["CONTENT_TYPE"] = content_type
    before = stored()

    response = sandbox.client.generic("GET", STATUS_URL, **extra)

    assert response.status_code < 500, f"{response.status_code}: {response.content[:300]!r}"
    assert stored() == before
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert_error_shape(response)
        assert response.status_code in (400, 404), body
        return
    assert response.status_code == 200
    # Only the owner's own job can be shown, never the other tenant's.
    assert body["job_uuid"] == status_jobs[OWN_JOB]
    assert list(body)[: len(FINAL_KEYS)] == FINAL_KEYS
    results = body["results"]
    assert body["success_count"] + body["failure_count"] == body["total_numbers"] == 2
    if "filtered_number" in body:
        assert [r["number"] for r in results] == [body["filtered_number"]]
    else:
        assert [r["number"] for r in results] == ["15551230111", "15551230113"]


# --- Headers ------------------------------------------------------------------------------


@FUZZ
@given(
    authorization=st.one_of(
        st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
        st.tuples(TEXT, TEXT).map(
            lambda t: "Basic " + base64.b64encode(f"{t[0]}:{t[1]}".encode("utf-8", "surrogatepass")).decode()
        ),
        st.sampled_from(["owner-api\x00", "\x00", "owner-api ", "OWNER-API", "owner-api\n"]).map(
            lambda u: "Basic " + base64.b64encode(f"{u}:owner-secret-value-for-tests".encode()).decode()
        ),
        st.sampled_from(["Basic", "Basic ", "Basic ===", "Bearer x", "basic Zm9vOmJhcg==", "Digest a=b"]),
        HEADER_TEXT,
    ),
    method=st.sampled_from(["GET", "POST"]),
)
@example(authorization="Basic " + base64.b64encode(b"\x00:\x00").decode(), method="GET")
@example(authorization="Basic " + base64.b64encode(b"owner-api\x00:x").decode(), method="POST")
def test_it_answers_401_to_odd_authorization_headers(
    sandbox: Sandbox, authorization: str, method: str
) -> None:
    before = stored()
    if method == "GET":
        response = sandbox.client.generic(
            "GET",
            STATUS_URL,
            QUERY_STRING=f"job_uuid={uuid.uuid4()}",
            HTTP_AUTHORIZATION=authorization,
        )
    else:
        response = sandbox.client.generic(
            "POST",
            POST_URL,
            data=json_bytes({"numbers": ["15551230111"]}, True),
            content_type="application/json",
            HTTP_AUTHORIZATION=authorization,
        )

    assert response.status_code == 401, f"{response.status_code}: {response.content[:300]!r}"
    assert assert_error_shape(response)["error"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Basic")
    assert stored() == before


@FUZZ
@given(
    key=st.one_of(
        HEADER_TEXT,
        st.integers(250, 300).map(lambda n: "k" * n),
        st.sampled_from(['""', '"', '"a\\"b"', '"\\\\"', "  ", "\t", '"' + "k" * 255 + '"']),
    ),
    body=st.sampled_from(
        [
            {"numbers": ["15551230111"]},
            {"numbers": ["15551230113"], "webhook_url": None},
            {"numbers": [15551230111]},
            {"numbers": []},
            {"numbers": ["\ud800"]},
        ]
    ),
)
def test_it_never_answers_500_to_odd_idempotency_keys(sandbox: Sandbox, key: str, body: Any) -> None:
    """Sent twice: the second answer repeats the first (docs/api.md#idempotency), and at most one job
    is stored."""
    apps.get_model("restores", "IdempotencyKey").objects.all().delete()  # each example starts afresh
    before = stored()

    first, second = (
        sandbox.post(json_bytes(body, True), "application/json", HTTP_IDEMPOTENCY_KEY=key) for _ in range(2)
    )

    assert first.status_code < 500, f"{first.status_code}: {first.content[:300]!r}"
    if first.status_code >= 400:
        assert_error_shape(first)
        assert first.status_code == 400, first.content
        assert (second.status_code, second.content) == (first.status_code, first.content)
        assert stored() == before
        return
    # The answer is well-formed, and the repeat is the same answer without a second job.
    check_answer(first, before, body)
    assert second.status_code == first.status_code
    assert second.json() == first.json()
