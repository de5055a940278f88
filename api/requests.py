"""Request bodies of the API: pydantic models, so FastAPI validates types and the schema shows
every option with its default and limits.

The checks that need the model (a prompt's token count, a token that must be one token, a
sentence that must have a verb) stay in `interp`, as for the pages; here are only what a JSON
body can get wrong by itself: a missing or mistyped field, a number out of range, a string far
too long to be a prompt. Forms already described as `interp.inputs.InputField`s (patching's) are
turned into models by `fields_model`, so their defaults, bounds and choices are stated once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from interp.errors import InvalidOptionError
from interp.inputs import InputField, values_from_answers
from interp.models import default_model_name

MAX_PROMPT_CHARS = 20_000  # far beyond any model's window; the token limit is interp's check
MAX_NAME_CHARS = 200


class ApiRequest(BaseModel):
    """Every request names the model it runs on (default: the dashboard's first choice)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(default_factory=lambda: default_model_name() or "demo", min_length=1,
                       max_length=MAX_NAME_CHARS,
                       description="A key of GET /api/models (a Hugging Face id or a local folder "
                                   "only where the deployment allows custom models).")


class PromptRequest(ApiRequest):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS,
                        description="The text to analyse.")


KIND_TYPES = {"text": str, "long_text": str, "slider": float, "integer": int, "number": float,
              "flag": bool}


def field_type(input_field: InputField):
    """The Python type of an answer to `input_field` (a Literal of its choices for a choice)."""
    if input_field.kind in ("choice", "radio"):
        return Literal[tuple(input_field.choices)]
    if input_field.kind == "multi_choice":
        return list[Literal[tuple(input_field.choices)]]
    if input_field.kind == "slider" and isinstance(input_field.default, int):
        return int
    kind_type = KIND_TYPES[input_field.kind]
    return kind_type | None if input_field.empty_means_none else kind_type


def field_spec(input_field: InputField):
    limits: dict[str, Any] = {}
    if input_field.minimum is not None:
        limits["ge"] = input_field.minimum
    if input_field.maximum is not None:
        limits["le"] = input_field.maximum
    if input_field.kind in ("text", "long_text"):
        limits["max_length"] = MAX_PROMPT_CHARS
    default = input_field.default
    if input_field.empty_means_none and default == "":
        default = None
    description = input_field.label + (f". {input_field.help}" if input_field.help else "")
    if isinstance(default, list):
        return Field(default_factory=lambda: list(input_field.default), description=description,
                     **limits)
    return Field(default=default, description=description, **limits)


def fields_model(name: str, fields: tuple[InputField, ...]) -> type[BaseModel]:
    """A request model with one field per InputField (named by its keyword argument)."""
    return create_model(name, __config__=ConfigDict(extra="forbid"),
                        **{f.argument: (field_type(f), field_spec(f)) for f in fields})


def validated(schema: type[BaseModel], values: dict, what: str) -> BaseModel:
    """`values` checked against `schema` inside a handler's call: an invalid one raises the
    typed error (422) naming each field, as FastAPI's own validation would."""
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            ".".join(str(part) for part in problem["loc"]) + ": " + problem["msg"]
            for problem in error.errors()[:10])
        raise InvalidOptionError(f"{what} are not valid: {problems}.") from None


def arguments(request: BaseModel, fields: tuple[InputField, ...]) -> dict:
    """The interp call's keyword arguments from a `fields_model` request, as a page's form
    gives them (`interp.inputs.values_from_answers`: fields not asked are left out)."""
    values = request.model_dump()
    return values_from_answers(fields, {f.key: values[f.argument] for f in fields})
