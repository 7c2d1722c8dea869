"""Plain data and text out of objects the model's code made, for the worker's trusted code.

The worker's REPL (`repl.Session`) calls these wherever it takes something from the model's code: host
call arguments, FINAL / SUBMIT values, the trailing expression, the step's error. Loaded inside the
worker as a top-level module, like `policy`.

The rule they implement: trusted code keeps only values of exact built-in types (`type(x) is str`,
never `isinstance`, which may look up a hostile `__class__`), and reads subclasses of str, int,
float, list, tuple and dict through the base type's own C methods (`str.__str__(x)`,
`dict.items(x)`), so no method the model wrote runs. Turning any other object into text does call
the model's methods; the worker does that only while the step's timer runs.
"""

from __future__ import annotations

import json
import reprlib
import types
from typing import Any

# JSON-like values nest far less; deeper means a cycle or an attempt to exhaust the C stack.
MAX_DEPTH = 100
# A traceback is walked at most this far (the recursion limit keeps real ones shorter).
_MAX_TRACEBACK = 100_000

# The getters behind `cls.__name__` and `exc.__traceback__`, called directly: no metaclass property,
# `__getattribute__` or class attribute of the model's can stand in front of them.
_class_name = type.__dict__["__name__"].__get__
_traceback_of = BaseException.__dict__["__traceback__"].__get__


class NotPlainData(TypeError):
    """The value holds something other than text, numbers, booleans, None, lists and dicts."""


def exact_str(text: Any) -> str:
    """`text` (a str or a subclass) as an exact str, copied without calling its methods."""
    if type(text) is str:
        return text
    if issubclass(type(text), str):  # issubclass with a built-in class consults no hook
        return str.__str__(text)
    raise NotPlainData(f"expected text, got {class_name(type(text))}")


def valid_text(text: str) -> str:
    """`text` with lone surrogates (which UTF-8 cannot carry) replaced by '?'."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} characters cut]"


def class_name(cls: type) -> str:
    return clip(exact_str(_class_name(cls)), 200)


def plain(value: Any, as_text: Any = None, _depth: int = 0) -> Any:
    """A copy of `value` made of exact str, int, float, bool, None, list and dict only.

    Tuples become lists and dict keys text, as in JSON. Anything else raises NotPlainData, or, if
    `as_text` is given, is replaced by `as_text(item)` (which may call the model's code: only
    under the step's timer).
    """
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float:
        return value
    if kind is str:
        return valid_text(value)
    if _depth >= MAX_DEPTH:
        raise NotPlainData(f"the value is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    if issubclass(kind, str):
        return valid_text(str.__str__(value))
    if issubclass(kind, int):  # bool cannot be subclassed; int.__index__ copies to an exact int
        return int.__index__(value)
    if issubclass(kind, float):
        return float.__float__(value)
    if issubclass(kind, list):
        return [plain(item, as_text, _depth + 1) for item in list.__iter__(value)]
    if issubclass(kind, tuple):
        return [plain(item, as_text, _depth + 1) for item in tuple.__iter__(value)]
    if issubclass(kind, dict):
        return {_plain_key(key): plain(item, as_text, _depth + 1) for key, item in dict.items(value)}
    if as_text is not None:
        return exact_str(as_text(value))
    raise NotPlainData(f"{class_name(kind)} objects cannot be passed on; use text, numbers, lists or dicts")


def _plain_key(key: Any) -> str:
    kind = type(key)
    if kind is str or issubclass(kind, str):
        return valid_text(exact_str(key))
    if key is None or issubclass(kind, int) or issubclass(kind, float):
        return json.dumps(plain(key))  # as JSON writes them: 1 -> "1", True -> "true"
    raise NotPlainData(f"dict keys must be text or numbers, not {class_name(kind)}")


def to_text(value: Any) -> str:
    """What FINAL(value) answers: text as is, JSON for plain data, else `str(value)`.

    Calls the model's `__str__` for other objects: only under the step's timer.
    """
    if type(value) is str:
        return value
    try:
        copy = plain(value)
    except NotPlainData:
        return exact_str(str(value))
    if type(copy) is str:
        return copy
    if type(copy) is list or type(copy) is dict:
        try:
            return json.dumps(copy, ensure_ascii=False)
        except ValueError:  # an int too long for text
            pass
    return exact_str(str(copy))


def short_repr(value: Any, limit: int) -> str:
    """The REPL's echo of a trailing expression. Calls the model's `__repr__`: only under the timer."""
    shortener = reprlib.Repr()
    shortener.maxstring = limit
    shortener.maxother = limit
    shortener.maxlist = shortener.maxtuple = shortener.maxset = shortener.maxdict = 50
    shortener.maxlevel = 4
    return clip(exact_str(shortener.repr(value)), limit)


def describe_error(exc: BaseException, source: str, codes: tuple[Any, ...], limit: int) -> str:
    """`Name: message (at line N: text)` for an error out of the step. Only under the step's timer.

    The line number comes from real traceback, frame and code objects of the model's code, and the
    line's text from `source`, when the code object is one of this step's `codes` (never from
    linecache, which would open whatever file a code object names).
    """
    name = class_name(type(exc))
    try:
        message = clip(exact_str(str(exc)), limit)
    except Exception:  # a message that cannot be shown must not hide the error itself
        message = "<the error's message could not be shown>"
    where = _step_line(_traceback_of(exc), source, _code_ids(codes))
    return f"{name}: {message}{where}" if message else f"{name}{where}"


def _code_ids(codes: tuple[Any, ...]) -> set[int]:
    ids: set[int] = set()
    pending = [code for code in codes if type(code) is types.CodeType]
    while pending:
        code = pending.pop()
        ids.add(id(code))
        pending.extend(const for const in code.co_consts if type(const) is types.CodeType)
    return ids


def _step_line(tb: Any, source: str, step_codes: set[int]) -> str:
    """` (at line N: text)` for the innermost frame of the model's code in the traceback `tb`."""
    found = None
    for _ in range(_MAX_TRACEBACK):
        if type(tb) is not types.TracebackType:
            break
        frame = tb.tb_frame
        code = frame.f_code if type(frame) is types.FrameType else None
        if type(code) is types.CodeType and type(code.co_filename) is str and code.co_filename == "<step>":
            lineno = tb.tb_lineno
            if type(lineno) is int:
                found = (lineno, id(code) in step_codes)
        tb = tb.tb_next
    if found is None:
        return ""
    lineno, in_this_step = found
    if not in_this_step:
        return f" (at line {lineno} of an earlier step)"
    lines = source.splitlines()
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return f" (at line {lineno}: {clip(text, 200)})" if text else f" (at line {lineno})"
