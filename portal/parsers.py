"""A JSON parser that refuses what cannot be stored or answered."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, refusing lone UTF-16 surrogates and absurd nesting.

    JSON allows lone surrogates as escapes (``"\\ud800"``), but no UTF-8 text
    (a database column, a JSON answer echoing the bad value) can hold them.
    Nesting deep enough to exhaust Python's recursion limit is refused too.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        except UnicodeEncodeError:
            raise ParseError("JSON parse error - the body contains an unpaired surrogate escape.") from None
        return data
