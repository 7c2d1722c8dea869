"""The short description of a context that the root model sees instead of the context itself.

Called once per node by the loop. It costs O(number of documents), never a pass over the text,
and its size does not grow with the context (the design's first promise).
"""

from __future__ import annotations

from typing import Any

HEAD_CHARS = 600
TAIL_CHARS = 300
MAX_LISTED_DOCUMENTS = 20
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


def describe_context(context: Any) -> str:
    total = context_length(context)
    size = f"{total:,} characters (~{total // CHARS_PER_TOKEN:,} tokens)"
    if isinstance(context, str):
        return f"`context` is a str of {size}.\n{_preview(context)}"
    if isinstance(context, dict):
        listing = [f"  {key!r}: {_describe_document(value)}" for key, value in _first(context.items())]
        more = _more(len(context))
        return (
            f"`context` is a dict of {len(context)} documents, {size} in all; context[name] gives one.\n"
            + "\n".join(listing)
            + more
        )
    if isinstance(context, (list, tuple)):
        listing = [f"  [{i}]: {_describe_document(value)}" for i, value in enumerate(_first(context))]
        return (
            f"`context` is a list of {len(context)} documents, {size} in all; context[i] gives one.\n"
            + "\n".join(listing)
            + _more(len(context))
        )
    return f"`context` is a {type(context).__name__} of {size}."


def shows_whole(context: Any) -> bool:
    """Whether the description already shows the entire context to the model."""
    return isinstance(context, str) and len(context) <= HEAD_CHARS + TAIL_CHARS


def _document_length(document: Any) -> int:
    return len(document) if isinstance(document, str) else len(str(document))


def _describe_document(document: Any) -> str:
    if isinstance(document, str):
        head = document[:80].replace("\n", " ")
        return f"str, {len(document):,} chars, starts {head!r}"
    return f"{type(document).__name__}, {_document_length(document):,} chars as text"


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
