"""The short description of a context that the root model sees instead of the context itself.

Called once per node by the loop. It costs O(number of documents), never a pass over the text,
and its size does not grow with the context (the design's first promise).
"""

from __future__ import annotations

from typing import Any

HEAD_CHARS = 600
TAIL_CHARS = 300
MAX_LISTED_DOCUMENTS = 20
DOCUMENT_HEAD_CHARS = 80
KEY_CHARS = 80  # a document's name or a structured document's key, as shown
CHARS_PER_TOKEN = 4  # a rough, provider-independent estimate; shown as "~" to the model


def context_length(context: Any) -> int:
    """Total characters of a context: a str, or a list/dict of documents."""
    if isinstance(context, str):
        return len(context)
    if isinstance(context, dict):
        return sum(_document_length(v) for v in context.values())
    if isinstance(context, (list, tuple)):
        return sum(_document_length(v) for v in context)
    return len(str(context))


def context_is_ascii(context: Any) -> bool:
    """Whether every document of a context is ASCII text (a fast check in C per document)."""
    if isinstance(context, str):
        return context.isascii()
    documents = (
        context.values() if isinstance(context, dict) else context if isinstance(context, (list, tuple)) else [context]
    )
    return all(str(document).isascii() for document in documents)


def describe_context(context: Any) -> str:
    """What `context` is and how to read it: the model's only view of it before its code runs.

    Each kind of context gets the reading advice that works on it (slicing a dict fails), using
    its real keys, so the model never has to guess its shape.
    """
    total = context_length(context)
    size = f"{total:,} characters (~{total // CHARS_PER_TOKEN:,} tokens)"
    if isinstance(context, str):
        return f"`context` is a str of {size}. {_text_reading_hint(context)}\n{_preview(context)}"
    if isinstance(context, dict):
        first = next(iter(context), None)
        listing = [f"  {_shown(key)}: {_describe_document(value)}" for key, value in _first(context.items())]
        return (
            f"`context` is a dict of {len(context)} documents, {size} in all. Its keys are the document "
            f"names (list(context) lists them) and context[name] is one document"
            + (f", e.g. {_reading_hint(_document(first, 0), context[first])}" if first is not None else "")
            + "."
            + _documents_search_hint("name", "context.items()", _first(context.values()))
            + "\n"
            + "\n".join(listing)
            + _more(len(context))
        )
    if isinstance(context, (list, tuple)):
        listing = [f"  [{i}]: {_describe_document(value)}" for i, value in enumerate(_first(context))]
        hint = f", e.g. {_reading_hint('context[0]', context[0])}" if context else ""
        search = _documents_search_hint("i", "enumerate(context)", _first(context))
        return (
            f"`context` is a {type(context).__name__} of {len(context)} documents, {size} in all; "
            f"context[i] is one document{hint}.{search}\n" + "\n".join(listing) + _more(len(context))
        )
    return f"`context` is a {type(context).__name__} of {size}; print(repr(context)[:2000]) shows its start."


def shows_whole(context: Any) -> bool:
    """Whether the description already shows the entire context to the model."""
    return isinstance(context, str) and len(context) <= HEAD_CHARS + TAIL_CHARS


def quoted_parts(context: Any) -> list[tuple[str, str]]:
    """The parts of `context` its description quotes, each with the expression that prints it."""
    if isinstance(context, str):
        return [(f"context[:{HEAD_CHARS}]", context[:HEAD_CHARS]), (f"context[-{TAIL_CHARS}:]", context[-TAIL_CHARS:])]
    if isinstance(context, dict):
        named = _first(context.items())
    elif isinstance(context, (list, tuple)):
        named = list(enumerate(_first(context)))
    else:
        return []
    return [
        (f"{_document(key, index)}[:{DOCUMENT_HEAD_CHARS}]", doc[:DOCUMENT_HEAD_CHARS])
        for index, (key, doc) in enumerate(named)
        if isinstance(doc, str)
    ]


def _shown(key: Any) -> str:
    """A key as the model reads it, clipped: the model's code names a child's keys, and a key of
    2 MB went whole into every step's prompt of that child (attack round 22)."""
    text = repr(key)
    return text if len(text) <= KEY_CHARS else f"{text[:KEY_CHARS]}... ({len(text):,} characters)"


def _document(key: Any, index: int) -> str:
    """Code that names one document of `context`: by its key, or by position when the key is long."""
    if isinstance(key, int):
        return f"context[{key}]"  # a list's index
    text = repr(key)
    return f"context[{text}]" if len(text) <= KEY_CHARS else f"context[list(context)[{index}]]"


def _document_length(document: Any) -> int:
    return len(document) if isinstance(document, str) else len(str(document))


def _text_reading_hint(text: str) -> str:
    """How to find things in a long text: whole lines when it has lines, a window around each match if not.

    Said in code because small models act on code they are shown, not on prose: told only that
    `splitlines()` gives lines, the bundled model searched the whole text with `re.search(p,
    context).group()`, took the matched word for "the line" and searched that word for the
    answer until its steps ran out (docs/BENCHMARKS.md, the main-job example). Placeholders, not
    search words: any real word would resemble some task, and the model copies it.
    """
    if "\n" in text[:HEAD_CHARS]:  # the sample shows lines; no pass over the whole text
        return (
            "Slices such as context[:2000] show a part of it. To find something, keep whole lines: "
            "[line for line in context.splitlines() if word in line] lists every line that holds the "
            "text in `word`; re.search(pattern, line) tests a line against a pattern. (A match's .group() "
            "is only the text the pattern matched, not the line around it.)"
        )
    return (
        "Slices such as context[:2000] show a part of it. To find something, look around each match: "
        "[context[max(m.start() - 200, 0):m.end() + 200] for m in re.finditer(pattern, context)] lists "
        "the text around every match. (A match's .group() is only the text the pattern matched.)"
    )


def _documents_search_hint(key: str, pairs: str, listed: list[Any]) -> str:
    """How to search every text document at once, judged by the listed ones: none when one of them
    is not text (the code would fail on it), by lines when the first has lines."""
    if not listed or not all(isinstance(document, str) for document in listed):
        return ""
    if "\n" in listed[0][:HEAD_CHARS]:
        found = f"[({key}, line) for {key}, text in {pairs} for line in text.splitlines() if word in line]"
        return f" To find something in every document: {found} lists each line that holds the text in `word`."
    found = (
        f"[({key}, text[max(m.start() - 200, 0):m.end() + 200]) for {key}, text in {pairs} "
        "for m in re.finditer(pattern, text)]"
    )
    return f" To find something in every document: {found} lists the text around every match."


def _reading_hint(expression: str, document: Any) -> str:
    if isinstance(document, str):
        return f"print({expression}[:1000])"
    if isinstance(document, dict):
        return f"print(list({expression})) for its keys"
    if isinstance(document, (list, tuple)):
        return f"print(len({expression}), {expression}[:3])"
    return f"print(repr({expression})[:1000])"


def _describe_document(document: Any) -> str:
    if isinstance(document, str):
        head = document[:DOCUMENT_HEAD_CHARS].replace("\n", " ")
        return f"str, {len(document):,} chars, starts {head!r}"
    return f"{_shape(document)}, {_document_length(document):,} chars as text"


def _shape(value: Any, depth: int = 0) -> str:
    """A structured document's shape in a few words: its type, its keys or its items' type."""
    if depth < 2 and isinstance(value, dict):
        keys = list(_first(value))[:8]
        shown = ", ".join(_shown(key) for key in keys)
        return f"dict with {len(value)} keys [{shown}]{' ...' if len(value) > len(keys) else ''}"
    if depth < 2 and isinstance(value, (list, tuple)):
        inner = f" of {_shape(value[0], depth + 1)}" if value else ""
        return f"{type(value).__name__} of {len(value)} items{inner}"
    return type(value).__name__


def _first(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if len(out) == MAX_LISTED_DOCUMENTS:
            break
        out.append(item)
    return out


def _more(count: int) -> str:
    hidden = count - MAX_LISTED_DOCUMENTS
    return f"\n  ... and {hidden} more" if hidden > 0 else ""


def _preview(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return f"Whole context:\n<<<\n{text}\n>>>"
    return f"Start:\n<<<\n{text[:HEAD_CHARS]}\n>>>\nEnd:\n<<<\n{text[-TAIL_CHARS:]}\n>>>"
