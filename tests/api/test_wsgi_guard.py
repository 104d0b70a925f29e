"""The WSGI entry point that gunicorn serves survives charsets that crash Django's request."""

from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from portal.wsgi import application, sanitize_environ


def call(environ: dict[str, Any]) -> tuple[str, bytes]:
    setup_testing_defaults(environ)
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = status

    body = b"".join(application(environ, start_response))
    return seen["status"], body


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["rot13", "idna", "hex", "base64", "zlib"])
def test_it_answers_a_4xx_json_error_to_a_charset_that_is_not_a_text_encoding(charset: str) -> None:
    body = b'{"numbers": ["15551230111"]}'
    status, content = call(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v3/bulk_restore",
            "QUERY_STRING": "job_uuid=%41",
            "CONTENT_TYPE": f"application/json; charset={charset}",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
    )

    assert status.startswith("401"), status  # no credentials: refused before the body is read
    assert json.loads(content)["error"] == "authentication_failed"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("application/json; charset=rot13", "application/json"),
        ('text/plain; charset="idna"; x=1', "text/plain; x=1"),
        ("application/json; charset=utf-8", "application/json; charset=utf-8"),
        ("application/json; charset=latin-1", "application/json; charset=latin-1"),
        ("application/json; charset=no-such-codec", "application/json; charset=no-such-codec"),
        ("application/json", "application/json"),
    ],
)
def test_it_drops_only_charsets_that_django_cannot_decode_with(given: str, kept: str) -> None:
    assert sanitize_environ({"CONTENT_TYPE": given})["CONTENT_TYPE"] == kept


def test_it_drops_every_bad_charset_when_several_are_given() -> None:
    given = "application/json; charset=utf-8; charset=rot13"

    assert sanitize_environ({"CONTENT_TYPE": given})["CONTENT_TYPE"] == "application/json; charset=utf-8"
