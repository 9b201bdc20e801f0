"""Rows validated inside pydantic-core, as plain dicts: the bulk writers' hot path.

A Create schema validates into a model instance; for a million rows that is a million objects,
and a SQLModel schema adds a Python `__init__` per row on top (pydantic then calls back into
Python for each one, and validates twice). `RowValidator` compiles the same field schemas —
the rules declared once on the types, bounds, patterns and case folding included — into one
typed-dict validator: the result is a dict with every field (defaults filled in), and no Python
runs per row. Schemas whose rules need the model itself (model validators, `__post_init__`)
keep validating through the model.

    rows = RowValidator(WhaleTransactionCreate)
    row = rows.validate_json(line)                 # bytes or str of one JSON object
    row = rows.validate_python({"hash": ...})      # a mapping (lax: "12" -> 12, ISO strings)
    batch = rows.validate_json_lines(lines=[...])  # many JSON objects in one call, or None
    derived = RowValidator(WhaleTransactionCreate, defaults={"whale_score": None})

`defaults` makes fields optional with the given value (not validated: the caller derives those
from the validated row, then checks them).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic_core import CoreSchema, SchemaValidator
from pydantic_core import core_schema as cs


class RowValidator:
    """Validates rows of `schema` into dicts holding every field of the schema."""

    def __init__(self, schema: type[BaseModel], *, defaults: Mapping[str, Any] | None = None):
        self.schema = schema
        self.defaults = dict(defaults or {})
        unknown = set(self.defaults) - set(schema.model_fields)
        if unknown:
            raise ValueError(f"{schema.__name__} has no field {sorted(unknown)[0]!r}")
        core = _typed_dict_schema(schema, self.defaults)
        self._validator = SchemaValidator(core) if core is not None else None
        self._many = SchemaValidator(cs.list_schema(core)) if core is not None else None
        self._keyed = (
            SchemaValidator(cs.dict_schema(cs.str_schema(), core)) if core is not None else None
        )
        # Keys no input can write (see validate_json_lines): a secret of this validator's own.
        self._nonce = secrets.token_hex(16)
        self._keys: tuple[list[str], list[bytes]] = ([], [])
        self._adapter: TypeAdapter[Any] | None = None
        if core is None:
            self._adapter = TypeAdapter(schema)
        self.fields = tuple(schema.model_fields)

    @property
    def through_model(self) -> bool:
        """True when the schema's rules need the model (validation builds instances)."""
        return self._validator is None

    def validate_python(self, data: Any) -> dict[str, Any]:
        if self._validator is not None:
            return self._validator.validate_python(data)  # type: ignore[no-any-return]
        return self._from_model(data, json=False)

    def validate_many(self, rows: list[Any]) -> list[dict[str, Any]]:
        """A list of rows in one call (an error's location starts with the row's index)."""
        if self._many is not None:
            return self._many.validate_python(rows)  # type: ignore[no-any-return]
        return [self._from_model(row, json=False) for row in rows]

    def validate_json(self, data: bytes | str) -> dict[str, Any]:
        if self._validator is not None:
            return self._validator.validate_json(data)  # type: ignore[no-any-return]
        return self._from_model(data, json=True)

    def validate_json_lines(self, *, lines: Sequence[bytes]) -> list[dict[str, Any]] | None:
        """Many JSON documents (the lines of a JSON Lines file) validated in one core call, each
        exactly as `validate_json` would; None when any is not a valid row (or the schema
        validates through its model): validate them one by one to learn which, and why.

        The lines are the values of one JSON object keyed by a random nonce and their index.
        Joined into an array, a line such as `{"a":[{}` could swallow its neighbours and the
        elements no longer be the lines; here that would drop a key, and no line can add one
        back without knowing the nonce. So when the keys come back exactly as written, each
        value is one whole line.
        """
        if self._keyed is None or not lines:
            return None
        names, prefixes = self._key_list(len(lines))
        try:
            document = b"".join(itertools.chain.from_iterable(zip(prefixes, lines, strict=False)))
            rows = self._keyed.validate_json(document + b"}")
        except (ValueError, TypeError):  # not a valid row (ValidationError), or not bytes
            return None
        if len(rows) != len(lines) or list(rows) != names[: len(lines)]:
            return None
        return list(rows.values())

    def _key_list(self, count: int) -> tuple[list[str], list[bytes]]:
        names, prefixes = self._keys
        if len(names) < count:  # grown once per larger batch; swapped whole (threads share it)
            names = [f"{self._nonce}{i}" for i in range(max(count, 2 * len(names)))]
            prefixes = [f'{"," if i else "{"}"{name}":'.encode() for i, name in enumerate(names)]
            self._keys = (names, prefixes)
        return names, prefixes

    def json_validator(self) -> Callable[[bytes | str], dict[str, Any]]:
        """`validate_json` for a loop over many rows: the core validator's own method when
        there is one (no Python frame per row)."""
        if self._validator is not None:
            return self._validator.validate_json
        return self.validate_json

    def python_validator(self) -> Callable[[Any], dict[str, Any]]:
        """`validate_python` likewise."""
        if self._validator is not None:
            return self._validator.validate_python
        return self.validate_python

    def _from_model(self, data: Any, *, json: bool) -> dict[str, Any]:
        assert self._adapter is not None
        if isinstance(data, Mapping):
            data = {**self.defaults, **data}
        model = self._adapter.validate_json(data) if json else self._adapter.validate_python(data)
        return dict(model.__dict__)


def _typed_dict_schema(schema: type[BaseModel], defaults: Mapping[str, Any]) -> CoreSchema | None:
    """The model's own field schemas in a typed dict, or None when the model must validate."""
    core: Any = schema.__pydantic_core_schema__
    definitions = None
    if core.get("type") == "definitions":
        definitions, core = core["definitions"], core["schema"]
    if (
        core.get("type") != "model"
        or core.get("post_init")
        or core.get("root_model")
        or core["schema"].get("type") != "model-fields"
        or schema.__pydantic_decorators__.model_validators
    ):
        return None
    model_fields = core["schema"]
    fields: dict[str, cs.TypedDictField] = {}
    for name, field in model_fields["fields"].items():
        inner = field["schema"]
        if name in defaults:
            base = inner["schema"] if inner.get("type") == "default" else inner
            inner = cs.with_default_schema(base, default=defaults[name])
        fields[name] = cs.typed_dict_field(
            inner,
            required=inner.get("type") != "default",
            validation_alias=field.get("validation_alias"),
        )
    typed = cs.typed_dict_schema(
        fields,
        extra_behavior=model_fields.get("extra_behavior"),
        config=core.get("config"),
    )
    return cs.definitions_schema(typed, definitions) if definitions else typed
