"""Problems in words, one line for them all: pydantic's validation errors as the key, what
is wrong and the value given, and a list of problems cut to the first few and a count, so
an error line stays about MAX_LINE characters however much is wrong."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

# an error line's length past its subject: a screen line or two
MAX_LINE = 300
SHOWN_PROBLEMS = 3


def summarize(subject: object, found: list[str]) -> str:
    """`subject: problem; problem; problem; and N more`: the first few problems, as many as
    fit about MAX_LINE characters (a single long one is cut), and how many more there are."""
    budget = max(MAX_LINE - len(str(subject)) - 2, 120)
    shown = found[:SHOWN_PROBLEMS]
    while len(shown) > 1 and len("; ".join(shown)) > budget:
        shown.pop()
    text = "; ".join(shown)
    if len(text) > budget:
        text = text[: budget - 1] + "…"
    if len(found) > len(shown):
        text += f"; and {len(found) - len(shown)} more"
    return f"{subject}: {text}" if subject else text


def describe(err: ValidationError, model: type[BaseModel], prefix: tuple = ()) -> str:
    """Pydantic's errors as one line: each key, what is wrong, and the value given (the
    first few, and how many more)."""
    return summarize("", problems(err, model, prefix))


def problems(err: ValidationError, model: type[BaseModel], prefix: tuple = ()) -> list[str]:
    """Each of pydantic's errors in words: the key, what is wrong, and the value given."""
    parts = []
    unknown: dict[tuple, list[str]] = {}  # misspelt keys of one mapping make one problem
    for error in err.errors():
        location = (*prefix, *error["loc"])
        key = ".".join(str(p) for p in location) or "recipe"
        if error["type"] == "extra_forbidden":
            if error["loc"][:-1] not in unknown:
                parts.append(error["loc"][:-1])
            unknown.setdefault(error["loc"][:-1], []).append(key)
        elif error["type"] == "missing":
            parts.append(f"{key}: missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            shown = "" if isinstance(given, dict) or given is None else f" (got {given!r})"
            parts.append(f"{key}: {message}{shown}")
    parts = [part if isinstance(part, str) else _unknown_keys(model, part, unknown[part]) for part in parts]
    # a key or value from the file may hold a line break; the message stays one line
    return [part.replace("\r", "\\r").replace("\n", "\\n") for part in parts]


def _unknown_keys(model: type[BaseModel], parent: tuple, keys: list[str]) -> str:
    allowed = _allowed_keys(model, parent)
    hint = f" (expected one of {', '.join(allowed)})" if allowed else ""
    if len(keys) == 1:
        return f"{keys[0]}: unknown key{hint}"
    names = ", ".join(key.rsplit(".", 1)[-1] for key in keys)
    return f"{'.'.join(str(p) for p in parent) or 'recipe'}: unknown keys {names}{hint}"


def _allowed_keys(model: type[BaseModel], location: tuple) -> list[str]:
    """Walk the schema to the model at `location` and list its keys."""
    current: Any = model
    for part in location:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            if field is None:
                return []
            current = field.annotation
        elif isinstance(part, (int, str)):
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] down to the one non-None type."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
