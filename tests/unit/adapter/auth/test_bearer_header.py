"""The token is taken only from a well-formed `Authorization: Bearer <token>` header value."""

from __future__ import annotations

import pytest

from adapter.auth.bearer import MAX_TOKEN_LENGTH, bearer_token
from adapter.auth.errors import InvalidRequestError, InvalidTokenError, MissingTokenError

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize("value", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}"])
def test_bearer_scheme_any_case_accepted(value: str) -> None:
    assert bearer_token(value) == TOKEN


def test_b64token_padding_and_punctuation_accepted() -> None:
    assert bearer_token("Bearer abc-._~+/xyz==") == "abc-._~+/xyz=="


@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_credentials_is_missing_token(value: str | None) -> None:
    with pytest.raises(MissingTokenError) as caught:
        bearer_token(value)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    "value", [f"Basic {TOKEN}", f"Token {TOKEN}", f"DPoP {TOKEN}", "Digest username=x"]
)
def test_other_scheme_is_missing_bearer_token(value: str) -> None:
    with pytest.raises(MissingTokenError):
        bearer_token(value)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        f"Bearer  {TOKEN}",
        f"Bearer {TOKEN} ",
        f"Bearer {TOKEN} extra",
        f"Bearer\t{TOKEN}",
        f"Bearer{TOKEN}",
        f"Bearer {TOKEN}\n",
        f"Bearer {TOKEN},{TOKEN}",
        f'Bearer "{TOKEN}"',
        "Bearer tökén",
        "Bearer =abc",
        "Bearer a=b",
        f"Bearer {TOKEN}\x00",
    ],
)
def test_malformed_bearer_header_is_invalid_request(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        bearer_token(value)
    assert caught.value.status == 400
    assert caught.value.reason == "invalid_request"
    assert TOKEN not in caught.value.message


def test_oversized_token_refused_without_parsing() -> None:
    with pytest.raises(InvalidTokenError) as caught:
        bearer_token("Bearer " + "a" * (MAX_TOKEN_LENGTH + 1))
    assert caught.value.cause == "oversized"


def test_token_at_size_limit_accepted() -> None:
    assert len(bearer_token("Bearer " + "a" * MAX_TOKEN_LENGTH)) == MAX_TOKEN_LENGTH
