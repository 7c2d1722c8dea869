"""Keyword arguments that look like a misspelled RLM parameter, warned about when RLM() is built.

RLM passes keyword arguments it does not know to the model as request settings (`top_p=...`), so
`history_path=` (for `history_output_path=`) was not noticed where it was written: it failed at
the first LM call, as a provider error about a request key, after the sandbox had started. A
warning, not an error: providers take settings whose names are close to ours (`max_new_tokens`,
`model_id`), and those must still reach them.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable

# Request settings providers take whose names are close to one of RLM's own (`verbosity` and
# `verbose`, `max_retries` and `max_time_s`): never taken for a misspelling.
KNOWN_REQUEST_SETTINGS = frozenset(
    {
        "verbosity", "max_retries", "num_retries", "max_completion_tokens", "reasoning_effort", "top_p",
        "top_k", "seed", "stop", "n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
        "response_format", "extra_headers", "extra_body", "cache", "rollout_id", "api_version", "stream",
        "tools", "tool_choice", "parallel_tool_calls", "user", "metadata", "logit_bias", "thinking",
        "model_type", "base_url",
    }
)  # fmt: skip


class MisspelledParameterWarning(UserWarning):
    """A keyword given to RLM() looks like one of its parameters misspelled."""


def warn_misspelled_parameters(given: Iterable[str], parameters: Iterable[str], owner: str = "RLM()") -> None:
    """A warning naming the parameter meant, for each of `given` that looks like one of `parameters`
    misspelled (close in spelling, or its words all in one parameter's name)."""
    names = [name for name in parameters if name not in ("self", "lm_kwargs")]
    for key in given:
        if key in KNOWN_REQUEST_SETTINGS:
            continue
        meant = _meant(key, names)
        if meant is not None:
            warnings.warn(
                f"{owner} has no parameter {key!r}: did you mean {meant}=? It is sent to the model as a request "
                "setting, as every keyword RLM() does not know is.",
                MisspelledParameterWarning,
                stacklevel=3,
            )


def _meant(key: str, names: list[str]) -> str | None:
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    if close:
        return close[0]
    words = set(key.split("_"))
    if len(words) >= 2:
        for name in names:
            if words <= set(name.split("_")):
                return name
    return None
