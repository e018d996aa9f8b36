"""Precise validation messages: which field is wrong and why, even inside `oneOf` variants.

jsonschema reports a failed `oneOf` as "is not valid under any of the given schemas". For a
variant chosen by a discriminator (fault `kind`), the useful errors are those of that variant.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from connexion.utils import is_null, is_nullable
from connexion.validators import (
    FormDataValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError, best_match
from starlette.responses import Response
from starlette.types import Scope, Send

import strict_json
from mocks.core.problems import FieldError, MockProblem
from openapi_schemas import compiled_validator

# The formats connexion's own parameter validator checks (and the page shortcut, as it does).
PARAMETER_FORMATS = Draft4Validator.FORMAT_CHECKER

# Fields whose values are personal data: never echoed back in an error message.
PERSONAL_FIELDS = frozenset(
    {
        "nik",
        "nip",
        "full_name",
        "gelar_depan",
        "gelar_belakang",
        "display_name",
        "birth_date",
        "birth_place",
        "address",
        "phone",
        "email",
    }
)


# Fields whose values are secrets: never echoed back or logged either.
SECRET_FIELDS = frozenset(
    {"client_secret", "secret", "api_key", "password", "token", "access_token", "refresh_token"}
)


def _message(error: ValidationError) -> str:
    """jsonschema's message, without the value when any field on its path is personal or a
    secret, whatever the value's type (a NIK sent as a number; a whole `address` object)."""
    fields = {str(part) for part in error.absolute_path if isinstance(part, str)}
    if fields & (PERSONAL_FIELDS | SECRET_FIELDS):
        return str(error.message).replace(repr(error.instance), "the value")
    return str(error.message)


def _path(error: ValidationError) -> str:
    return "/".join(str(part) for part in error.absolute_path) or "(body)"


def _chosen_variant(error: ValidationError) -> list[ValidationError] | None:
    """The sub-errors of the `oneOf` branch the discriminator (or a `kind` enum) selects."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    discriminator = schema.get("discriminator", {}).get("propertyName")
    if not discriminator or not isinstance(error.instance, Mapping):
        return None
    wanted = error.instance.get(discriminator)
    for index, branch in enumerate(schema.get("oneOf", [])):
        allowed = branch.get("properties", {}).get(discriminator, {}).get("enum", [])
        if wanted in allowed:
            return [e for e in error.context or [] if e.relative_schema_path[0] == index]
    choices = sorted(
        value
        for branch in schema.get("oneOf", [])
        for value in branch.get("properties", {}).get(discriminator, {}).get("enum", [])
    )
    return [
        ValidationError(
            f"{discriminator} must be one of {', '.join(map(str, choices))}"
            + ("" if wanted is None else f", not {wanted!r}"),
            path=[*error.absolute_path, discriminator],
        )
    ]


def _leaves(error: ValidationError) -> list[ValidationError]:
    if error.validator in ("oneOf", "anyOf") and error.context:
        chosen = _chosen_variant(error)
        if chosen is not None:
            return [leaf for sub in chosen for leaf in _leaves(sub)] or [error]
        best = best_match(error.context)
        return _leaves(best) if best is not None and best is not error else [error]
    return [error]


def field_errors(errors: Iterable[ValidationError], location: str = "body") -> list[FieldError]:
    """One precise FieldError per leaf problem, in a stable order."""
    leaves = [leaf for error in errors for leaf in _leaves(error)]
    leaves.sort(key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [FieldError(location, _path(leaf), _message(leaf)) for leaf in leaves]


class PreciseParameterValidator(ParameterValidator):  # type: ignore[misc]
    """connexion's parameter validator, answering 400 with the parameter named as a field and
    its value never quoted (a NIK typed where an STR number goes, say): connexion's own detail
    was jsonschema's whole report, schema and value included."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        name = str(param_name or param.get("name") or "?")
        if is_nullable(param) and is_null(value):
            return None
        if value is None:
            if param.get("required"):
                return f"Missing {parameter_type} parameter '{name}'"
            return None
        schema = param.get("schema", param)
        errors = list(Draft4Validator(schema, format_checker=PARAMETER_FORMATS).iter_errors(value))
        if not errors:
            return None
        error = best_match(errors)
        quoted = repr(error.instance)
        message = str(error.message)
        if message.startswith(quoted):  # jsonschema's messages open with the value
            message = "the value" + message[len(quoted) :]
        if quoted in message:
            message = f"the value fails the schema's {error.validator!r}"
        raise MockProblem(
            400,
            f"{parameter_type} parameter {name}: {message}",
            errors=[FieldError(parameter_type, name, message)],
        )


# What `_parse` returns for an empty body, so that an explicit JSON `null` is still validated.
NO_BODY: Any = object()


class PreciseJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """connexion's JSON body validator, answering 400 with every problem listed by field."""

    async def _parse(self, stream: AsyncIterator[bytes], scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return NO_BODY
        try:
            # NaN stored would be served as `NaN`, which strict parsers refuse.
            return strict_json.loads(raw.decode(self._encoding))
        except UnicodeDecodeError as exc:
            raise MockProblem(
                400, f"the request body is not valid {self._encoding}: {exc.reason}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise MockProblem(400, f"the request body is not valid JSON: {exc}") from exc
        except strict_json.NotJson as exc:
            raise MockProblem(400, f"the request body is not valid JSON: {exc}") from None
        except ValueError:  # Python's bound on an integer's digits (sys.get_int_max_str_digits)
            raise MockProblem(
                400, "the request body is not valid here: a number in it has too many digits"
            ) from None
        except RecursionError:
            raise MockProblem(400, "the request body's JSON is nested too deeply") from None

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if body is NO_BODY:
            if self._required:
                raise MockProblem(400, "this operation needs a request body")
            return None  # an optional body left out; an explicit `null` is validated below
        _refuse_if_invalid(self._validator.iter_errors(body), "the request body")
        return None


class PreciseFormDataValidator(FormDataValidator):  # type: ignore[misc]
    """connexion's form body validator, answering 400 with every problem listed by field and
    logging nothing: its own logs the message, which quotes the value (a client secret)."""

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if not isinstance(body, dict):
            raise MockProblem(400, "the form body must be a set of fields")
        if self._strict_validation:
            self._validate_params_strictly(body)
        _refuse_if_invalid(self._validator.iter_errors(body), "the form body")
        return None


def _refuse_if_invalid(found: Iterable[ValidationError], what: str) -> None:
    """A 400 listing every problem by field (never a personal or secret value), if any."""
    errors = list(found)
    if not errors:
        return
    problems = field_errors(errors)
    summary = "; ".join(f"{p.name}: {p.message}" for p in problems[:5])
    raise MockProblem(400, f"{what} does not match the schema: {summary}", errors=problems)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A JSON answer spliced from record bodies checked against the contract when stored.

    `envelope` is the answer with its records left out (a page's `data` empty), checked per
    request; None when the answer is one stored body with a fixed envelope around it.
    """

    body: bytes
    envelope: Any | None


# Set by the handler that built the answer, read by the response validator of the same request.
_STORED_ANSWER: ContextVar[StoredAnswer | None] = ContextVar("hf_mock_stored_answer", default=None)


def stored_json_response(body: bytes, envelope: Any | None, status: int = 200) -> Response:
    """A 200 JSON response of stored bodies, so response validation doesn't parse them again."""
    _STORED_ANSWER.set(StoredAnswer(body, envelope))
    return Response(body, status_code=status, media_type="application/json")


class FastJSONResponseBodyValidator(JSONResponseBodyValidator):  # type: ignore[misc]
    """connexion's response validation, checked by jsonschema-rs (compiled once per schema).

    Validating a 100-record page with the pure-Python validator costs ~50 ms; the mocks keep
    response validation on, so it must be cheap. A failure is re-checked by connexion's own
    validator to word the error exactly as before. An answer made by `stored_json_response`
    has its envelope checked here and its records not again: each was checked when stored
    (`RecordStore`), and parsing ~180 KB per page to check it again cost more than the rest of
    the request.
    """

    def wrap_send(self, send: Send) -> Send:
        stored = _STORED_ANSWER.get()
        if stored is None:
            return super().wrap_send(send)  # type: ignore[no-any-return]
        _STORED_ANSWER.set(None)
        held: list[MutableMapping[str, Any]] = []

        async def send_stored(message: MutableMapping[str, Any]) -> None:
            held.append(message)
            if message["type"] == "http.response.start" or message.get("more_body", False):
                return
            if len(held) == 2 and held[1].get("body") is stored.body:
                if stored.envelope is not None:
                    self._validate(stored.envelope)
            else:  # not the answer the handler stored (e.g. replaced on the way): check it all
                self._validate(self._parse(m.get("body", b"") for m in held))
            while held:
                await send(held.pop(0))

        return send_stored

    def _validate(self, body: Any) -> None:
        fast = compiled_validator(self._schema)
        if fast is not None and fast.is_valid(body):
            return
        super()._validate(body)
