"""CodeQA-like items over the running interpreter's standard library: questions about real code.

The context is a dict `path -> source` of stdlib modules picked by the seed from
`sysconfig.get_paths()["stdlib"]` until the size is reached; every gold answer is read from the
source with `ast`, never written by hand. The same seed gives the same item on the same Python
version, which the item records (`meta["python"]`). Shapes: the top-level function with the most
parameters, the number of top-level classes, the file defining a function, a parameter's default.
"""

from __future__ import annotations

import ast
import platform
import random
import sysconfig
from collections import Counter
from pathlib import Path

from rlm.benchmarks.paper.item import CHARS_PER_TOKEN, PaperItem

# a question, its gold answer, how to score it, and the candidates a reader could name
Shape = tuple[str, str, str, tuple[str, ...]]

KINDS = ("most_params", "class_count", "defining_file", "default_value")
_SKIP = {"this.py", "antigravity.py", "__hello__.py", "__phello__.py"}


def stdlib_files() -> list[Path]:
    """Public top-level modules of the stdlib, sorted: the pool items draw from."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if not p.name.startswith("_") and p.name not in _SKIP)


def pick_sources(rng: random.Random, size_tokens: int) -> dict[str, str]:
    """Modules in seeded order that fit the budget, until it is ~90% full."""
    budget = size_tokens * CHARS_PER_TOKEN
    files = stdlib_files()
    rng.shuffle(files)
    chosen: dict[str, str] = {}
    used = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if used + len(text) <= budget:
            chosen[path.name] = text
            used += len(text)
        if used >= budget * 0.9 and len(chosen) >= 2:
            break
    if len(chosen) < 2:
        raise ValueError(f"no two stdlib modules fit in {size_tokens} tokens: use a larger size")
    return dict(sorted(chosen.items()))


def param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def top_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _most_params(path: str, tree: ast.Module, sources: dict[str, str]) -> Shape | None:
    functions = top_functions(tree)
    counts = sorted((param_count(f) for f in functions), reverse=True)
    if len(functions) < 3 or counts[0] == counts[1]:
        return None
    best = max(functions, key=param_count)
    query = (
        f"In the file '{path}', which top-level function (a `def` at module level, not a method) takes the most "
        "parameters, counting every parameter including *args and **kwargs? Answer with the function name."
    )
    return query, best.name, "choice", tuple(f.name for f in functions)


def _class_count(path: str, tree: ast.Module, sources: dict[str, str]) -> Shape | None:
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if not classes:
        return None
    query = f"How many classes does the file '{path}' define at its top level (not nested)? Answer with a number."
    return query, str(len(classes)), "exact_number", ()


def _defining_file(path: str, tree: ast.Module, sources: dict[str, str]) -> Shape | None:
    owners: Counter[str] = Counter()
    for text in sources.values():
        for fn in top_functions(ast.parse(text)):
            owners[fn.name] += 1
    names = [f.name for f in top_functions(tree) if owners[f.name] == 1 and not f.name.startswith("_")]
    if not names:
        return None
    name = names[len(names) // 2]
    query = f"Which file defines the top-level function '{name}'? Answer with the file name."
    return query, path, "choice", tuple(sources)


def _default_value(path: str, tree: ast.Module, sources: dict[str, str]) -> Shape | None:
    seen: Counter[str] = Counter(f.name for f in top_functions(tree))
    for fn in top_functions(tree):
        if seen[fn.name] != 1:
            continue
        a = fn.args
        positional = a.posonlyargs + a.args
        pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
        pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
        simple = [(arg.arg, d.value) for arg, d in pairs if isinstance(d, ast.Constant)]
        if not simple:
            continue
        param, value = simple[0]
        shown = str(value) if isinstance(value, str) else repr(value)
        if not shown.strip():
            continue
        query = (
            f"In the file '{path}', what is the default value of the parameter '{param}' of the top-level function "
            f"'{fn.name}'? Answer with the value only."
        )
        others = {str(v) if isinstance(v, str) else repr(v) for _, v in simple}
        return query, shown, "choice", tuple(sorted(others | {shown}))
    return None


_SHAPES = {"most_params": _most_params, "class_count": _class_count, "defining_file": _defining_file,
           "default_value": _default_value}  # fmt: skip


def codeqa(size_tokens: int, seed: int) -> PaperItem:
    """One CodeQA-like item; the shape rotates with the seed (the next shape if no file allows it)."""
    rng = random.Random(f"codeqa-{seed}")
    sources = pick_sources(rng, size_tokens)
    order = list(sources)
    rng.shuffle(order)
    start = seed % len(KINDS)
    for kind in KINDS[start:] + KINDS[:start]:
        for path in order:
            made = _SHAPES[kind](path, ast.parse(sources[path]), sources)
            if made is not None:
                query, answer, scoring, candidates = made
                meta = {"python": platform.python_version(), "file": path, "files": list(sources)}
                return PaperItem("codeqa", kind, query, sources, answer, scoring, size_tokens, seed, candidates, meta)
    raise ValueError(f"no CodeQA question fits the modules picked for seed {seed}: try another seed or size")
