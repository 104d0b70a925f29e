"""Validation of a submission's numbers and webhook URL (docs/api.md#bulk-restore-request and
#webhook-addresses)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restores.validation import (
    MAX_WEBHOOK_URL_LENGTH,
    SubmissionError,
    numbers_parse,
    webhook_url_validate,
)

LIMIT = 10_000


def parse(numbers: Any = None, numbers_text: Any = None, max_numbers: int = LIMIT) -> list[str]:
    return numbers_parse(numbers=numbers, numbers_text=numbers_text, max_numbers=max_numbers)


def parse_error(numbers: Any = None, numbers_text: Any = None, max_numbers: int = LIMIT) -> SubmissionError:
    with pytest.raises(SubmissionError) as caught:
        parse(numbers, numbers_text, max_numbers)
    return caught.value


# --- Good input -----------------------------------------------------------------------


def test_it_returns_the_numbers_of_the_array_in_order() -> None:
    assert parse(["15551230113", "15551230111", "15551230112"]) == [
        "15551230113",
        "15551230111",
        "15551230112",
    ]


def test_it_splits_numbers_text_on_lf() -> None:
    assert parse(numbers_text="15551230111\n15551230112\n15551230113") == [
        "15551230111",
        "15551230112",
        "15551230113",
    ]


def test_it_splits_numbers_text_on_crlf() -> None:
    assert parse(numbers_text="15551230111\r\n15551230112\r\n15551230113\r\n") == [
        "15551230111",
        "15551230112",
        "15551230113",
    ]


def test_it_splits_numbers_text_with_mixed_line_endings() -> None:
    assert parse(numbers_text="15551230111\r\n15551230112\n15551230113") == [
        "15551230111",
        "15551230112",
        "15551230113",
    ]


def test_it_ignores_blank_lines_and_surrounding_spaces_in_numbers_text() -> None:
    text = "\n   \n  15551230111  \r\n\t15551230112\t\n\r\n \u00a015551230113 \n\n"
    assert parse(numbers_text=text) == ["15551230111", "15551230112", "15551230113"]


def test_it_combines_numbers_and_numbers_text_numbers_first() -> None:
    assert parse(["15551230113", "15551230112"], "15551230111\n15551230110") == [
        "15551230113",
        "15551230112",
        "15551230111",
        "15551230110",
    ]


def test_it_counts_a_repeated_number_once_keeping_its_first_place() -> None:
    result = parse(
        ["15551230111", "15551230112", "15551230111"],
        "15551230113\n15551230112\n15551230111\n15551230113",
    )
    assert result == ["15551230111", "15551230112", "15551230113"]


def test_it_keeps_the_first_place_of_a_number_repeated_across_sources() -> None:
    assert parse(["15551230112"], "15551230111\n15551230112") == ["15551230112", "15551230111"]


@pytest.mark.parametrize("number", ["1234567", "123456789012345", "000000000000000", "0123456"])
def test_it_accepts_7_to_15_digits(number: str) -> None:
    assert parse([number]) == [number]
    assert parse(numbers_text=number) == [number]


def test_it_accepts_an_empty_array_beside_numbers_text() -> None:
    assert parse([], "15551230111") == ["15551230111"]


def test_it_accepts_an_empty_numbers_text_beside_numbers() -> None:
    assert parse(["15551230111"], "") == ["15551230111"]


def test_it_accepts_exactly_the_limit() -> None:
    numbers = [f"1555123{i:04d}" for i in range(5)]
    assert parse(numbers, max_numbers=5) == numbers


@given(
    st.lists(st.from_regex(r"[0-9]{7,15}", fullmatch=True), min_size=1, max_size=30).flatmap(
        lambda distinct: st.lists(st.sampled_from(distinct), min_size=1, max_size=60)
    )
)
def test_it_deduplicates_any_valid_list_in_first_occurrence_order(numbers: list[str]) -> None:
    expected = list(dict.fromkeys(numbers))
    assert parse(numbers) == expected
    assert parse(numbers_text="\r\n".join(numbers)) == expected
    assert parse(numbers[:3], "\n".join(numbers[3:])) == expected


# --- Bad entries ------------------------------------------------------------------------


BAD_ARRAY_ENTRIES = [
    pytest.param(15551230111, 15551230111, "must be a string of digits, not a number", id="integer"),
    pytest.param(1555123.5, 1555123.5, "must be a string of digits, not a number", id="float"),
    pytest.param(True, True, "must be a string of digits, not a boolean", id="boolean"),
    pytest.param(None, None, "must be a string of digits, not null", id="null"),
    pytest.param(["15551230111"], "list", "must be a string of digits, not an array", id="nested-list"),
    pytest.param({"number": "15551230111"}, "dict", "must be a string of digits, not an object", id="object"),
    pytest.param("+15551230111", "+15551230111", "must contain digits only (E.164 without '+')", id="plus"),
    pytest.param("555-0111", "555-0111", "must contain digits only (E.164 without '+')", id="dash"),
    pytest.param("", "", "is empty", id="empty"),
    pytest.param("123456", "123456", "must have 7 to 15 digits, not 6", id="too-short"),
    pytest.param("1234567890123456", "1234567890123456", "must have 7 to 15 digits, not 16", id="too-long"),
    pytest.param(
        "\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff10\uff11\uff11\uff11",
        "\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff10\uff11\uff11\uff11",
        "must contain digits only (E.164 without '+')",
        id="fullwidth-digits",
    ),
    pytest.param(
        "\u0661\u0665\u0665\u0665\u0661\u0662\u0663\u0660\u0661\u0661\u0661",
        "\u0661\u0665\u0665\u0665\u0661\u0662\u0663\u0660\u0661\u0661\u0661",
        "must contain digits only (E.164 without '+')",
        id="arabic-indic-digits",
    ),
    pytest.param(
        " 15551230111", " 15551230111", "must contain digits only (E.164 without '+')", id="space-in-array"
    ),
    pytest.param(
        "15551230111\n",
        "15551230111\n",
        "must contain digits only (E.164 without '+')",
        id="newline-in-array",
    ),
]


@pytest.mark.parametrize(("value", "echoed", "reason"), BAD_ARRAY_ENTRIES)
def test_it_rejects_a_bad_entry_in_numbers_naming_its_index_and_value(
    value: Any, echoed: Any, reason: str
) -> None:
    error = parse_error(["15551230111", value, "15551230112"])
    assert error.code == "invalid_numbers"
    assert error.extra["invalid"] == [{"source": "numbers", "index": 1, "value": echoed, "reason": reason}]
    assert error.extra["invalid_count"] == 1
    assert "nothing was stored" in error.message


BAD_TEXT_LINES = [
    pytest.param("+15551230111", "must contain digits only (E.164 without '+')", id="plus"),
    pytest.param("555-0111", "must contain digits only (E.164 without '+')", id="dash"),
    pytest.param("555 123 0111", "must contain digits only (E.164 without '+')", id="inner-spaces"),
    pytest.param("123456", "must have 7 to 15 digits, not 6", id="too-short"),
    pytest.param("1234567890123456", "must have 7 to 15 digits, not 16", id="too-long"),
    pytest.param(
        "\u0661\u0665\u0665\u0665\u0661\u0662\u0663\u0660", "must contain digits only", id="non-ascii"
    ),
]


@pytest.mark.parametrize(("line", "reason"), BAD_TEXT_LINES)
def test_it_rejects_a_bad_line_in_numbers_text_naming_its_line_and_value(line: str, reason: str) -> None:
    error = parse_error(numbers_text=f"15551230111\n{line}\n15551230112")
    assert error.code == "invalid_numbers"
    [entry] = error.extra["invalid"]
    assert entry["source"] == "numbers_text"
    assert entry["line"] == 2
    assert entry["value"] == line
    assert entry["reason"].startswith(reason)
    assert "index" not in entry


def test_it_names_every_bad_entry_from_both_sources() -> None:
    error = parse_error(
        [15551230111, "15551230112", "+15551230113", ""],
        "15551230114\r\n\r\n555-0111\r\n  \r\n12345\r\n15551230115",
    )
    assert error.code == "invalid_numbers"
    assert error.extra["invalid_count"] == 5
    assert [(e["source"], e.get("index", e.get("line")), e["value"]) for e in error.extra["invalid"]] == [
        ("numbers", 0, 15551230111),
        ("numbers", 2, "+15551230113"),
        ("numbers", 3, ""),
        ("numbers_text", 3, "555-0111"),
        ("numbers_text", 5, "12345"),
    ]
    assert "5 entries are not" in error.message


def test_it_says_one_entry_in_the_singular() -> None:
    error = parse_error(["12"])
    assert "1 entry is not" in error.message


def test_it_numbers_text_lines_from_one_counting_blank_ones() -> None:
    error = parse_error(numbers_text="\n\nabc\n")
    assert error.extra["invalid"] == [
        {"source": "numbers_text", "line": 3, "value": "abc", "reason": error.extra["invalid"][0]["reason"]}
    ]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\r"])
def test_it_splits_numbers_text_only_on_newlines(separator: str) -> None:
    # Only "\n" and "\r\n" end a line: anything else inside a line makes it a bad entry,
    # and the lines after it keep the numbers an editor shows.
    error = parse_error(numbers_text=f"15551230111{separator}15551230112\n15551230113\n+1")
    assert [(e["line"], e["value"]) for e in error.extra["invalid"]] == [
        (1, f"15551230111{separator}15551230112"),
        (3, "+1"),
    ]


def test_it_names_every_bad_entry_beyond_a_hundred() -> None:
    error = parse_error([f"+{i:010d}" for i in range(250)])
    assert error.extra["invalid_count"] == 250
    assert len(error.extra["invalid"]) == 250
    assert error.extra["invalid"][249] == {
        "source": "numbers",
        "index": 249,
        "value": "+0000000249",
        "reason": "must contain digits only (E.164 without '+')",
    }


def test_it_cuts_a_huge_bad_value_when_naming_it() -> None:
    error = parse_error(["9" * 1000])
    [entry] = error.extra["invalid"]
    assert entry["value"] == "9" * 64 + "…"
    assert entry["reason"] == "must have 7 to 15 digits, not 1000"


def test_it_reports_bad_entries_rather_than_no_numbers() -> None:
    # A bad entry is reported as such, not as "no numbers".
    error = parse_error(["abc"], "")
    assert error.code == "invalid_numbers"


# --- Wrong field types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "described"),
    [
        ("15551230111", "a string"),
        (15551230111, "a number"),
        ({"0": "15551230111"}, "an object"),
        (True, "a boolean"),
    ],
)
def test_it_rejects_numbers_that_is_not_an_array(value: Any, described: str) -> None:
    error = parse_error(value)
    assert error.code == "invalid_numbers"
    assert error.message == f"numbers must be an array of strings, not {described}."


@pytest.mark.parametrize(
    ("value", "described"),
    [
        (["15551230111"], "an array"),
        (15551230111, "a number"),
        ({"a": "15551230111"}, "an object"),
        (False, "a boolean"),
    ],
)
def test_it_rejects_numbers_text_that_is_not_a_string(value: Any, described: str) -> None:
    error = parse_error(numbers_text=value)
    assert error.code == "invalid_numbers"
    assert error.message == f"numbers_text must be a string with one number per line, not {described}."


# --- No numbers, too many numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("numbers", "numbers_text"),
    [(None, None), ([], None), (None, ""), ([], ""), (None, "\n  \r\n\t\n"), ([], "   ")],
)
def test_it_reports_no_numbers(numbers: Any, numbers_text: Any) -> None:
    error = parse_error(numbers, numbers_text)
    assert error.code == "no_numbers"
    assert error.extra == {}


def test_it_rejects_more_numbers_than_the_limit_naming_it() -> None:
    error = parse_error([f"1555123{i:04d}" for i in range(4)], max_numbers=3)
    assert error.code == "too_many_numbers"
    assert error.extra == {"limit": 3}
    assert "at most 3" in error.message
    assert "4 numbers" in error.message


def test_it_counts_numbers_from_both_sources_against_the_limit() -> None:
    error = parse_error(["15551230111", "15551230112"], "15551230113", max_numbers=2)
    assert error.code == "too_many_numbers"
    assert error.extra == {"limit": 2}


def test_it_counts_the_limit_after_removing_repeats() -> None:
    numbers = ["15551230111", "15551230112", "15551230111"]
    assert parse(numbers, "15551230112\n15551230111", max_numbers=2) == ["15551230111", "15551230112"]


def test_it_applies_the_default_job_limit_of_ten_thousand(settings: Any) -> None:
    assert settings.MAX_NUMBERS_PER_JOB == 10_000
    numbers = [f"1555{i:07d}" for i in range(10_001)]
    assert len(parse(numbers[:10_000], max_numbers=settings.MAX_NUMBERS_PER_JOB)) == 10_000
    error = parse_error(numbers, max_numbers=settings.MAX_NUMBERS_PER_JOB)
    assert error.extra == {"limit": 10_000}


# --- Webhook URL ----------------------------------------------------------------------------


@pytest.fixture
def private_targets_refused(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False


@pytest.mark.parametrize(
    "url",
    [
        "https://client.example.com/restore-hook",
        "http://client.example.com/restore-hook",
        "HTTPS://Client.Example.com:8443/hook?tenant=1&x=%20#frag",
        "https://client.example.com",
        "https://93.184.215.14/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://bücher.example/hook",
    ],
)
def test_it_accepts_an_absolute_http_or_https_url(url: str, private_targets_refused: None) -> None:
    assert webhook_url_validate(url) == url


@pytest.mark.parametrize("value", [None, ""])
def test_it_takes_a_missing_webhook_url_as_none(value: Any) -> None:
    assert webhook_url_validate(value) is None


@pytest.mark.parametrize(
    "url",
    [
        "/restore-hook",
        "client.example.com/restore-hook",
        "//client.example.com/restore-hook",
        "ftp://client.example.com/restore-hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "mailto:ops@example.com",
        "gopher://client.example.com/",
        "https:client.example.com",
        "http://",
        "https:///restore-hook",
        "https://client.example.com:99999/hook",
        "https://client.example.com:0/hook",
        "https://client.example.com:abc/hook",
        "https://[::1/hook",
        "https://client.example.com/restore hook",
        "https://client.example.com/\thook",
        "https://user:secret@client.example.com/hook",
        "https://user@client.example.com/hook",
    ],
)
def test_it_rejects_a_webhook_url_that_is_not_an_absolute_http_url(url: str) -> None:
    with pytest.raises(SubmissionError) as caught:
        webhook_url_validate(url)
    assert caught.value.code == "invalid_webhook_url"


@pytest.mark.parametrize(
    "url", ["https://client.example.com/\x00", "https://client.example.com/a\x7fb", "http://8.8.8.8/\x1b"]
)
def test_it_rejects_a_webhook_url_with_control_characters(url: str) -> None:
    with pytest.raises(SubmissionError) as caught:
        webhook_url_validate(url)
    assert caught.value.code == "invalid_webhook_url"
    assert caught.value.message == "webhook_url must not contain control characters."


@pytest.mark.parametrize("value", [123, ["https://client.example.com/"], {"url": "x"}, True])
def test_it_rejects_a_webhook_url_that_is_not_a_string(value: Any) -> None:
    with pytest.raises(SubmissionError) as caught:
        webhook_url_validate(value)
    assert caught.value.code == "invalid_webhook_url"
    assert caught.value.message == "webhook_url must be a string."


def test_it_accepts_a_webhook_url_of_exactly_2048_characters() -> None:
    prefix = "https://client.example.com/"
    url = prefix + "a" * (MAX_WEBHOOK_URL_LENGTH - len(prefix))
    assert len(url) == 2048
    assert webhook_url_validate(url) == url


def test_it_rejects_a_webhook_url_longer_than_2048_characters() -> None:
    prefix = "https://client.example.com/"
    url = prefix + "a" * (MAX_WEBHOOK_URL_LENGTH + 1 - len(prefix))
    with pytest.raises(SubmissionError) as caught:
        webhook_url_validate(url)
    assert caught.value.code == "invalid_webhook_url"
    assert "2048" in caught.value.message


NON_PUBLIC_LITERALS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://10.0.0.5/hook",
    "http://172.16.3.4:8080/hook",
    "https://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://[::1]/hook",
    "http://[::]/hook",
    "http://[fc00::1]/hook",
    "http://[fd12:3456::1]/hook",
    "http://[fe80::1]/hook",
    "http://[ff02::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
]


@pytest.mark.parametrize("url", NON_PUBLIC_LITERALS)
def test_it_rejects_a_literal_non_public_address(url: str, private_targets_refused: None) -> None:
    with pytest.raises(SubmissionError) as caught:
        webhook_url_validate(url)
    assert caught.value.code == "invalid_webhook_url"
    assert "not a public address" in caught.value.message


@pytest.mark.parametrize("url", ["http://127.0.0.1:9100/hook", "http://[::1]/hook", "http://10.0.0.5/hook"])
def test_it_accepts_private_targets_when_allowed(url: str, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    assert webhook_url_validate(url) == url


@pytest.mark.parametrize("url", ["http://localhost/hook", "https://internal.example.com/hook"])
def test_it_leaves_host_names_to_the_check_at_delivery(url: str, private_targets_refused: None) -> None:
    assert webhook_url_validate(url) == url
