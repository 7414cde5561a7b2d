"""Strict JSON bodies: UTF-8, no NaN, no duplicated key anywhere in the document."""

from __future__ import annotations

import pytest

from wabapool.api.request_rules import _media_type_problem, body_problem


@pytest.mark.parametrize(
    "body",
    [
        b'{"company_id": 101, "company_id": 102}',
        b'{"extra_attrs": {"waba_id": "1", "waba_id": "2"}}',
        b'{"items": [{"a": 1}, {"a": 1, "a": 2}]}',
        b'{"a": 1, "\\u0061": 2}',  # the same key, one of them escaped
    ],
)
def test_a_duplicated_key_at_any_depth_is_refused(body: bytes) -> None:
    assert "more than once" in (body_problem(body) or "")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": -Infinity}', "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_strict_json_is_refused_with_its_reason(body: bytes, problem: str) -> None:
    assert problem in (body_problem(body) or "")


def test_a_strict_json_body_passes() -> None:
    assert body_problem(b'{"a": {"b": [1, 2, {"c": null}]}, "d": "\\u00e9"}') is None


@pytest.mark.parametrize(
    "content_type", [b"application/json", b"application/json; charset=utf-8", b'Application/JSON;charset="UTF-8"']
)
def test_json_content_types_are_accepted(content_type: bytes) -> None:
    assert _media_type_problem(content_type) is None


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"text/json",
        b"application/json; charset=latin-1",
        b"application/jsonx",
    ],
)
def test_other_content_types_are_refused(content_type: bytes | None) -> None:
    assert _media_type_problem(content_type) is not None
