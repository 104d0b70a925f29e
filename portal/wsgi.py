"""WSGI entry point: ``gunicorn portal.wsgi``."""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^;\"]*)\"?", re.IGNORECASE)


def _usable_charset(name: str) -> bool:
    """Whether Django can decode a query string or form body in ``name`` without raising.

    Django builds the request with any charset that ``codecs`` knows, including ones
    that are not text encodings (``rot13``) or that refuse ``errors="replace"``
    (``idna``), and fails before any middleware or exception handler runs.
    """
    try:
        if not codecs.lookup(name)._is_text_encoding:
            return False
        b"%\xff".decode(name, "replace")
    except LookupError:
        return True  # unknown: Django ignores it and keeps UTF-8
    except (UnicodeError, ValueError, TypeError):
        return False
    return True


def sanitize_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """Drop every ``charset`` parameter of Content-Type that would crash request parsing.

    The body is then read as UTF-8, and the API answers a clear 4xx if it is not.
    """
    content_type = environ.get("CONTENT_TYPE", "")
    if "charset" in content_type.lower():
        environ["CONTENT_TYPE"] = _CHARSET.sub(
            lambda match: match.group(0) if _usable_charset(match.group(1).strip()) else "", content_type
        )
    return environ


def guarded(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return app(sanitize_environ(environ), start_response)

    return wrapper


application = guarded(get_wsgi_application())
