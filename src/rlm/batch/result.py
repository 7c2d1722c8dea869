"""`BatchResult`: what one batch item produced, and its row in the results JSONL.

Built by the runners (batch/execute.py) and read back by the result store and `rlm view`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class BatchResult:
    """One item's outcome. `error_class` is None when the item ran to an answer."""

    id: str
    answer: str | None = None
    value: Any = None  # the typed answer, once typed outputs exist; None until then
    finish_reason: str | None = None
    iterations: int = 0
    depth: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    error_class: str | None = None
    error: str | None = None
    history_path: str | None = None
    graph_path: str | None = None
    meta: Any = None

    @property
    def ok(self) -> bool:
        return self.error_class is None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_row(self) -> dict[str, Any]:
        """The JSON object written to the results file (with a readable `status`)."""
        return {
            "id": self.id,
            "status": "ok" if self.ok else "failed",
            # The fields as they are: asdict() deep-copied the typed value recursively, and one nested
            # ~500 deep raised RecursionError out of the whole batch (json.dumps writes it as it is).
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "id"},
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BatchResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @classmethod
    def failed(cls, item_id: str, exc: BaseException, wall_time_s: float, **paths: Any) -> BatchResult:
        message = str(exc) or traceback.format_exception_only(type(exc), exc)[-1].strip()
        return cls(id=item_id, error_class=type(exc).__name__, error=message, wall_time_s=wall_time_s, **paths)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret value in `text`: provider errors sometimes quote the key they got."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
