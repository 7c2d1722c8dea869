"""The RestrictedPython policy of the local sandbox: what the model's code may touch.

Loaded inside the worker process only (as a top-level module, without the `rlm` package).
Modules are never handed out: `import re` yields a facade holding an allowlist of the module's
public functions and classes, so no attribute chain leads to `sys`, `os` or the host.

Classes: the model may define ordinary classes (methods, `__init__`, comparisons), but never a
metaclass, and never a class from a dict of its choosing. Every class it makes has `type` as its
metaclass and only the dunder methods RestrictedPython lets a `def` name (`__init__`, `__eq__`, ...),
so no `__del__`, `__str__`, `__getattribute__`, `__prepare__` or `__init_subclass__` of the model's
exists to run later inside the worker's trusted code. That needs two doors shut: the real `type`
(its three-argument call builds a class from a dict, its subclasses are metaclasses) never
reaches the code, see `_type_builtin`; and `class` statements go through `WriteGuard.build_class`,
which takes only bases whose metaclass is exactly `type` and no class keywords.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import operator
import types
from typing import Any

from RestrictedPython import RestrictingNodeTransformer, compile_restricted_eval, compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safer_getattr,
)
from RestrictedPython.transformer import IOPERATOR_TO_STR

if __package__:  # imported in the host, as part of `rlm` (the tests check the policy in-process)
    from .output import PrintCollector
else:  # imported by the worker, as a top-level module
    from output import PrintCollector  # type: ignore[import-not-found,no-redef,unused-ignore]

# Attributes that lead from ordinary objects to frames, code and globals without an underscore.
# RestrictedPython already refuses names starting with "_" and its own INSPECT_ATTRIBUTES.
BLOCKED_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "gi_suspended",
        "cr_frame",
        "cr_code",
        "cr_await",
        "cr_origin",
        "ag_frame",
        "ag_code",
        "ag_await",
        "tb_frame",
        "tb_next",
        "tb_lasti",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "f_trace",
        "f_generator",
        "co_code",
        "co_consts",
        "co_names",
        "co_filename",
        "func_globals",
        "func_code",
        "mro",
        "register",  # type.mro / ABC.register let code climb or patch the class tree
    }
)

# Module name -> the public names offered, or None for "every public, non-module attribute".
SAFE_MODULES: dict[str, tuple[str, ...] | None] = {
    "re": (
        "compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split",
        "escape", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A",
        "Pattern", "Match", "error",
    ),
    "json": ("loads", "dumps", "JSONDecodeError"),
    "math": None,
    "cmath": None,
    "statistics": (
        "mean", "fmean", "median", "median_low", "median_high", "mode", "multimode", "stdev",
        "pstdev", "variance", "pvariance", "quantiles", "geometric_mean", "harmonic_mean",
        "StatisticsError",
    ),
    "collections": ("Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"),
    "itertools": None,
    "functools": ("reduce", "partial", "lru_cache", "cache", "cmp_to_key"),
    "heapq": None,
    "bisect": None,
    "string": (
        "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
        "octdigits", "punctuation", "printable", "whitespace", "capwords",
    ),
    "textwrap": ("wrap", "fill", "shorten", "dedent", "indent"),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR"),
    # Offered because datetime's C code imports it through the code's `__import__` to serve
    # strftime and f"{d:%Y}" (it then reads the real module from sys.modules, not what we return).
    # No sleep: waiting is never an answer, and the step's time limit would only stop it.
    "time": (
        "time", "monotonic", "perf_counter", "gmtime", "localtime", "mktime", "strftime", "strptime", "struct_time",
    ),
    "difflib": ("SequenceMatcher", "get_close_matches", "unified_diff", "ndiff"),
    "random": (
        "random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "seed",
        "gauss",
    ),
    "csv": ("reader", "DictReader", "Error"),
    "fractions": ("Fraction",),
    "decimal": ("Decimal",),
    "unicodedata": ("normalize", "category", "name"),
    "base64": ("b64encode", "b64decode"),
    "hashlib": ("md5", "sha1", "sha256"),
    "html": ("escape", "unescape"),
}  # fmt: skip


class ModuleFacade:
    """A read-only namespace standing in for a module in the model's code."""

    __slots__ = ("_names", "_title")

    def __init__(self, title: str, names: dict[str, Any]) -> None:
        object.__setattr__(self, "_title", title)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name: str) -> Any:
        names = object.__getattribute__(self, "_names")
        if name in names:
            return names[name]
        title = object.__getattribute__(self, "_title")
        raise AttributeError(f"module {title!r} offers no attribute {name!r} in the sandbox")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_names"))

    def __repr__(self) -> str:
        return f"<module {object.__getattribute__(self, '_title')!r} (sandboxed)>"


# Bound in every namespace before the first step, as the instructions name them: small models
# write `collections.Counter()` without the import (a NameError that cost whole runs their steps).
# Each is imported at its first use, not at the worker's start (statistics alone pulls in decimal,
# fractions and random: 25-58 ms, against a 60 ms start). The E2B prelude imports the same list.
READY_MODULES = ("re", "json", "math", "collections", "itertools", "statistics", "datetime", "difflib")


class ReadyModule(ModuleFacade):
    """A module the namespace holds before any import: its facade's names are read at first use."""

    __slots__ = ()

    def __init__(self, module_name: str) -> None:
        # Code can reach this class through type(re): it must not name any other module with it
        # (guarded_import also serves `_strptime`, the real module, to datetime's C code).
        if module_name not in READY_MODULES:
            raise ImportError(f"{module_name!r} is not one of the modules bound before the first step")
        super().__init__(module_name, {})
        object.__setattr__(self, "_names", None)

    def __getattr__(self, name: str) -> Any:
        _load_ready(self)
        return ModuleFacade.__getattr__(self, name)

    def __dir__(self) -> list[str]:
        _load_ready(self)
        return ModuleFacade.__dir__(self)


def _load_ready(module: ReadyModule) -> None:
    """Read the facade's names once (later lookups cost what an imported module's do)."""
    if object.__getattribute__(module, "_names") is None:
        facade = guarded_import(object.__getattribute__(module, "_title"))
        object.__setattr__(module, "_names", object.__getattribute__(facade, "_names"))


def _facade(module_name: str) -> ModuleFacade:
    module = importlib.import_module(module_name)
    wanted = SAFE_MODULES[module_name]
    if wanted is None:
        wanted = tuple(n for n in dir(module) if not n.startswith("_"))
    names = {
        name: getattr(module, name)
        for name in wanted
        if hasattr(module, name) and not isinstance(getattr(module, name), types.ModuleType)
    }
    return ModuleFacade(module_name, names)


_FACADES: dict[str, ModuleFacade] = {}


# Modules that the standard library's C code imports through `__import__` while it serves an
# allowed call (`datetime.strptime` imports `_strptime`). Model code cannot name them: the policy
# refuses names with a leading underscore at compile time.
_STDLIB_INTERNAL_IMPORTS = frozenset({"_strptime"})


def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0):
    if level == 0 and name in _STDLIB_INTERNAL_IMPORTS:
        return importlib.import_module(name)
    if level != 0 or name not in SAFE_MODULES:
        allowed = ", ".join(sorted(SAFE_MODULES))
        raise ImportError(f"import of {name!r} is not allowed in the sandbox; available modules: {allowed}")
    if name not in _FACADES:
        _FACADES[name] = _facade(name)
    return _FACADES[name]


def guarded_getattr(obj: Any, name: str, default: Any = raise_, getattr: Any = getattr) -> Any:
    """`obj.name` for the code: a missing attribute raises AttributeError, as in Python (read as
    None, it sent models chasing the wrong error)."""
    if type(name) is not str:  # a str subclass could lie in `startswith` or `__eq__`
        raise TypeError("attribute names must be plain str in the sandbox")
    if name in BLOCKED_ATTRIBUTES:
        raise AttributeError(f'"{name}" is a restricted name in the sandbox')
    if isinstance(obj, ModuleFacade):
        # Facades hide their internals behind underscores; reach them only through __getattr__.
        return obj.__getattr__(name)
    return safer_getattr(obj, name, default, getattr)


_MISSING = object()


def _getattr_builtin(obj: Any, name: str, default: Any = _MISSING) -> Any:
    try:
        return guarded_getattr(obj, name, raise_, getattr)
    except AttributeError:
        if default is _MISSING:
            raise
        return default


def _hasattr_builtin(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name, raise_, getattr)
    except (AttributeError, NotImplementedError):
        return False
    return True


def _dir_builtin(*args: Any) -> list[str]:
    if not args:
        raise TypeError("dir() needs an object in the sandbox")
    return [n for n in dir(args[0]) if not n.startswith("_") and n not in BLOCKED_ATTRIBUTES]


_INPLACE_OPERATORS = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}  # fmt: skip


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    return _INPLACE_OPERATORS[op](x, y)


def _augitem(container: Any, key: Any, op: str, value: Any) -> None:
    """`container[key] op= value`; `container` has passed the write guard, as for `container[key] = v`."""
    container[key] = _inplacevar(op, container[key], value)


def _augattr(obj: Any, name: str, op: str, value: Any) -> None:
    """`obj.name op= value`; `obj` has passed the write guard, as for `obj.name = v`."""
    setattr(obj, name, _inplacevar(op, guarded_getattr(obj, name), value))


class WriteGuard:
    """Allows attribute writes only on instances of classes the model's own code defined."""

    def __init__(self) -> None:
        self.own_classes: set[type] = set()

    def build_class(self, body: Any, name: str, *bases: Any, **keywords: Any) -> Any:
        # RestrictedPython rewrites every `class` statement to pass `metaclass=__metaclass__` (which
        # make_globals binds to `type`) and refuses a `metaclass=` of the code's own.
        if keywords.get("metaclass", type) is not type or set(keywords) - {"metaclass"}:
            raise TypeError(f"class {name}: class keywords are not allowed in the sandbox")
        for base in bases:
            # Exactly `type`: no metaclass of the model's (nor ABCMeta) picks the class namespace or
            # builds the class, and no `__mro_entries__` object stands in for a base.
            if type(base) is not type:
                raise TypeError(
                    f"class {name}: only ordinary classes can be bases in the sandbox, not "
                    f"{type(base).__name__} objects or classes with a custom metaclass"
                )
        cls = builtins.__build_class__(body, name, *bases, metaclass=type)
        self.own_classes.add(cls)
        return cls

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, (dict, list, set, bytearray)) or type(obj) in self.own_classes:
            return obj
        raise TypeError(f"cannot modify attributes of {type(obj).__name__} objects in the sandbox")


SAFE_BUILTIN_NAMES = (
    "list",
    "dict",
    "set",
    "frozenset",
    "sum",
    "min",
    "max",
    "enumerate",
    "map",
    "filter",
    "any",
    "all",
    "reversed",
    "iter",
    "next",
    "bytes",
    "format",
    "ascii",
    "bin",
    "object",
    "sorted",
    "zip",
    "len",
    "range",
    "tuple",
    "str",
    "int",
    "float",
    "bool",
    "round",
    "abs",
    "divmod",
    "pow",
    "repr",
    "NameError",
    "StopIteration",
    "MemoryError",
    "RecursionError",
    "TimeoutError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "staticmethod",
    "classmethod",
    "property",
)


def _type_builtin(*args: Any) -> Any:
    """`type(x)`, the one-argument form only: models ask `type(context)`; classes come from `class`.

    The class of a class (`type(int)`, `type(type(1))`, `type(Fraction)`) is answered with this
    function itself, so `type(type(1)) is type` still holds in the sandbox, while the real `type`
    or another metaclass never reaches the code: called with three arguments it would build a class
    from a dict the code fills with `__del__`, `__str__` or `__getattribute__`, and subclassed it
    would give a metaclass whose `__prepare__` replaces the guards (`_getattr_`, `_write_`) inside
    a class body.
    """
    if len(args) != 1:
        raise TypeError("type() takes one argument in the sandbox, as in type(x); define classes with `class`")
    cls = type(args[0])
    return _type_builtin if issubclass(cls, type) else cls


def make_builtins(write_guard: WriteGuard) -> dict[str, Any]:
    allowed = dict(safe_builtins)
    for name in SAFE_BUILTIN_NAMES:
        allowed[name] = getattr(builtins, name)
    allowed.update(
        __import__=guarded_import,
        __build_class__=write_guard.build_class,
        getattr=_getattr_builtin,
        hasattr=_hasattr_builtin,
        dir=_dir_builtin,
        type=_type_builtin,
    )
    return allowed


def make_globals(extra: dict[str, Any]) -> dict[str, Any]:
    """A fresh namespace for one sandbox session, with the REPL functions in `extra`."""
    write_guard = WriteGuard()
    namespace: dict[str, Any] = {
        "__builtins__": make_builtins(write_guard),
        "__name__": "__rlm_repl__",
        # RestrictedPython builds `class` statements with `metaclass=__metaclass__`; build_class
        # accepts nothing else. The code cannot read it: its name starts with an underscore.
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": lambda obj, key: obj[key],
        "_getiter_": iter,
        "_write_": write_guard,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_inplacevar_": _inplacevar,
        "_augitem_": _augitem,
        "_augattr_": _augattr,
        "_apply_": lambda func, *args, **kwargs: func(*args, **kwargs),
        "_print_": PrintCollector,
        # A trailing `print(...)` is compiled as an expression, where no `_print` gets injected.
        "_print": PrintCollector(),
    }
    namespace.update({name: ReadyModule(name) for name in READY_MODULES})
    namespace.update(extra)
    return namespace


class _Transformer(RestrictingNodeTransformer):
    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """`a[k] += v` and `o.x += v` (RestrictedPython refuses both): one call that evaluates `a`,
        `k` and `v` once, as Python does, and writes through the same guard as `a[k] = v`.

        `counts[key] += 1` is how models count; refused, a run lost step after step rewriting it
        (the 60k OOLONG-Pairs run that made the first sub-calls of the bundled model here).
        """
        if isinstance(node.target, ast.Attribute) or (
            isinstance(node.target, ast.Subscript) and not isinstance(node.target.slice, ast.Slice)
        ):
            visited = self.node_contents_visit(node)  # the children pass the usual checks and guards
            target, operator_text = visited.target, IOPERATOR_TO_STR[type(node.op)]
            if isinstance(target, ast.Subscript):
                helper, where = "_augitem_", [target.value, target.slice]
            else:
                assert isinstance(target, ast.Attribute)
                helper, where = "_augattr_", [target.value, ast.Constant(target.attr)]
            call = ast.Call(
                func=ast.Name(helper, ast.Load()),
                args=[*where, ast.Constant(operator_text), visited.value],
                keywords=[],
            )
            return ast.fix_missing_locations(ast.copy_location(ast.Expr(call), node))
        return super().visit_AugAssign(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        # RestrictedPython rebuilds each class statement from a parsed template at line 1; keep the
        # statement's own line, so an error raised while building the class points at it.
        rebuilt: ast.ClassDef = super().visit_ClassDef(node)  # type: ignore[assignment]
        return ast.copy_location(rebuilt, node)


class PolicyError(Exception):
    """The code breaks the sandbox's compile-time rules; the message lists each violation."""


def compile_step(code: str) -> tuple[Any, Any]:
    """Compile a step: the statements, and its trailing expression (shown like a REPL) if any."""
    try:
        tree = ast.parse(code, "<step>", "exec")
    except SyntaxError as exc:
        raise SyntaxError(f"{exc.msg} (line {exc.lineno}): {(exc.text or '').strip()}") from None
    trailing = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop()
        trailing = ast.Expression(body=last.value)  # type: ignore[attr-defined]
        ast.fix_missing_locations(trailing)
    body = compile_restricted_exec(tree, "<step>", policy=_Transformer)
    if body.errors:
        raise PolicyError("\n".join(body.errors))
    tail_code = None
    if trailing is not None:
        tail = compile_restricted_eval(trailing, "<step>", policy=_Transformer)
        if tail.errors:
            raise PolicyError("\n".join(tail.errors))
        tail_code = tail.code
    return body.code, tail_code
