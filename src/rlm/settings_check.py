"""Keyword arguments that look like a misspelled RLM parameter, refused when RLM() is built.

RLM passes keyword arguments it does not know to the model as request settings (`top_p=...`), so
`history_path=` (for `history_output_path=`) was not refused where it was written: it failed at
the first LM call, as a provider error about a request key, after the sandbox had started.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from rlm.errors import ConfigurationError

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


def refuse_misspelled_parameters(given: Iterable[str], parameters: Iterable[str], owner: str = "RLM()") -> None:
    """ConfigurationError naming the parameter meant, for the first of `given` that looks like one of
    `parameters` misspelled (close in spelling, or its words all in one parameter's name)."""
    names = list(parameters)
    for key in given:
        if key in KNOWN_REQUEST_SETTINGS:
            continue
        meant = _meant(key, names)
        if meant is not None:
            raise ConfigurationError(
                f"{owner} has no parameter {key!r}: did you mean {meant}=? (keyword arguments it does not "
                "know are sent to the model as request settings)"
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
