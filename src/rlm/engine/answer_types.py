"""Typed answers: `RLM.run(query, context, output=T)`, the validator the root node consults at FINAL.

`T` is a builtin or typing type (`int`, `list[str]`, `dict[str, int]`), a dataclass, a Pydantic
model, or a DSPy-style field list (`"count: int, names: list[str]"`). Pydantic, which DSPy already
depends on, does the validation; this module turns a FINAL value (which reaches the host as text)
back into data, tells the model the expected shape, and words a refusal the model can act on.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import sys
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from rlm.engine.parsing import MODEL_SOURCE
from rlm.errors import ConfigurationError

# How much of a JSON schema the model is shown; a huge model class is summarised by its name.
MAX_SCHEMA_CHARS = 2000


class AnswerType:
    """The expected type of the root's answer, with its validator."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        target = _signature_model(spec) if isinstance(spec, str) else spec
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(target)
            self.schema = json.dumps(self.adapter.json_schema(), separators=(",", ":"))
        except Exception as exc:  # pydantic's errors for types it cannot build a validator for
            raise ConfigurationError(
                f"output={spec!r} is not a type recursive-llm can validate: use a builtin type (int, "
                "list[str], dict[str, int]), a dataclass, a Pydantic model, or a field list such as "
                f"'count: int, names: list[str]' ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None
        self.name = getattr(spec, "__name__", None) or str(spec)

    def instructions(self) -> str:
        """What the model is told about the answer's shape."""
        schema = self.schema if len(self.schema) <= MAX_SCHEMA_CHARS else f"(the schema of {self.name})"
        return (
            f"The answer must be a value of type {self.name}, as JSON matching this schema: {schema}. "
            "Build it in code and pass it to FINAL(value) (a dict, list, number, ... or its JSON text)."
        )

    def parse(self, answer: str) -> Any:
        """The typed value of a FINAL answer, or the ValidationError of its most structured reading."""
        first: ValidationError | None = None
        for candidate in _candidates(answer):
            try:
                value = self.adapter.validate_python(candidate)
            except ValidationError as exc:
                first = first or exc
                continue
            if not _writable(self.adapter.dump_python(value), finite=True):
                # The text itself is the last candidate, and lax validation reads "nan" or "inf"
                # as a float: checked again once validated.
                raise ValidationError.from_exception_data(
                    "Answer", [{"type": "finite_number", "loc": (), "input": answer[:100]}]
                )
            return value
        assert first is not None
        raise first

    def refusal(self, answer: str) -> str | None:
        """None if `answer` fits; else the line that tells the model why it was refused."""
        try:
            self.parse(answer)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:5]
            )
            return (
                f"Your FINAL value does not fit the expected type {self.name} ({problems}). "
                "Fix the value and call FINAL again."
            )
        return None


def _candidates(answer: str) -> list[Any]:
    """What the text may stand for, most structured first: JSON, a Python literal (`str(True)`,
    `str(['a'])`), then the text itself (which lax validation turns into numbers where it can)."""
    found: list[Any] = []
    text = answer.strip()
    # Whatever the model wrote must give a refusal, never an exception out of the node.
    with contextlib.suppress(ValueError, RecursionError, MemoryError):
        found.append(json.loads(text))
    with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        found.append(ast.literal_eval(ast.parse(text, MODEL_SOURCE, mode="eval")))
    # Only values the host can write back and read again anywhere: ints it can print in decimal,
    # nesting it can walk at any stack depth.
    found = [value for value in found if _writable(value)]
    found.append(answer)
    return found


# Deeper typed values were accepted up to what the parser manages (~950 levels), then broke the
# places that write them (a batch row, the user's own json.dumps at a deeper stack).
MAX_VALUE_NESTING = 100


def _writable(value: Any, finite: bool = False) -> bool:
    """Whether every int in `value` can be written in decimal (str, JSON), its lists and dicts
    nest at most MAX_VALUE_NESTING deep, and (with `finite`) no float is NaN or infinite. A hex literal
    (`0xfff...`) reads past Python's limit on decimal digits, which only guards decimal text: the
    typed value then could not be printed or saved, and `rlm ask --output int` ended in a
    traceback. NaN and infinities mean no answer, and strict JSON (a batch row, `rlm ask --json`
    read by another tool) cannot hold them; they are checked on the validated value, so the model
    reads that its number is not finite rather than that its list is no list."""
    limit = sys.get_int_max_str_digits()
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, int) and limit and item.bit_length() > limit * 3.32:  # log2(10) bits a digit
            return False
        if finite and isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, (list, tuple, set, frozenset, dict)):
            if depth >= MAX_VALUE_NESTING:
                return False
            members = [*item, *item.values()] if isinstance(item, dict) else list(item)
            pending.extend((member, depth + 1) for member in members)
    return True


def to_json_data(value: Any) -> Any:
    """A typed value as JSON data, for the places that write one (`rlm ask --output`, a batch's
    results file): sets and tuples as lists, keys, dates, bytes and complex numbers as text, models
    and dataclasses as objects. A type the user asked for may hold any of these, and an `Any` part
    holds whatever literal_eval built (attack round 22: `[1j]` and `{(1, 2): 3}` ended `rlm ask` in
    a traceback and a batch in TypeError); the value the Python API returns keeps its own types."""
    try:
        return _ANY.dump_python(value, mode="json")
    except Exception:  # pydantic's serialization errors (bytes that are not UTF-8, ...)
        return str(value)


_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def _signature_model(spec: str) -> type[BaseModel]:
    """A Pydantic model from a DSPy-style field list, e.g. "count: int, names: list[str]" (the part
    after "->" of a signature string is taken when there is one)."""
    import dspy

    outputs = spec.split("->", 1)[1] if "->" in spec else spec
    try:
        signature = dspy.Signature(f"query -> {outputs}")
    except Exception as exc:
        raise ConfigurationError(
            f"output={spec!r} is not a field list DSPy can read, e.g. 'count: int, names: list[str]' ({exc})"
        ) from None
    fields = {name: (field.annotation, ...) for name, field in signature.output_fields.items()}
    return create_model("Answer", **fields)  # type: ignore[call-overload]
