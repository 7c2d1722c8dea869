"""Eighteenth attack round, the user's API key in a provider's error text: what reaches the model's
code, the history file and `rlm ask`'s output.

Round 18 in six files by topic (test_attacks_round18_*.py; this one: keys). The round found
seven holes as strict xfails (reproductions, causes and suggested fixes in
/tmp/s10/attack18/HOLES.md), all closed the same session.

This topic's holes (numbered as the round's):
4. a provider's error text that quotes the API key (what `tracking/redact.py` exists for) reaches
   the model's code unredacted (llm_query's exception, llm_query_batched's "Error: ..." item), and
   from there the answer and the history file;
7. an api_key given in code (`RLM(api_key=...)`) is moved into the server engine (models/resolve.py),
   so the redaction of events' error fields, which looks for it in the LM's kwargs, misses it: the
   history file's error field holds the key (a key from the environment is redacted).
The fix: an LM error's text is redacted where the library's error is built (models/errors.py), with
the engine's key among the secrets.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from tests.sandbox.stand_in_providers import SUB_CALL, RefusesTheKey, keyed_rlm, refusing_sub_calls, serving

KEY = "sk-test-SECRETKEY1234567890abcdef"


def _provider_quoting_the_key(root_code: str):
    """Served for the block: the root model's reply runs `root_code`; a sub-call's prompt (SUB_CALL)
    is refused with a 400 whose message quotes the request's key."""
    return serving(refusing_sub_calls(root_code, 400, "key {key} may not use this model", "bad"))


@pytest.mark.parametrize(
    "root_code",
    [
        f'r = llm_query_batched(["{SUB_CALL}"])\nFINAL(r[0])',
        f'try:\n    llm_query("{SUB_CALL}")\nexcept Exception as e:\n    FINAL(str(e))',
    ],
    ids=["batched", "single"],
)
def test_the_api_key_quoted_by_a_provider_never_reaches_the_models_code(tmp_path, root_code):
    with _provider_quoting_the_key(root_code) as api_base:
        rlm = keyed_rlm(api_base, KEY, tmp_path / "history.json", max_iterations=3)
        answer = str(rlm.run("What failed?", "ctx").answer)
    assert "may not use this model" in answer  # the error did reach the model's code
    assert KEY not in answer
    assert KEY not in (tmp_path / "history.json").read_text(encoding="utf-8")


def test_an_api_key_given_in_code_is_redacted_from_the_history_files_error_fields(tmp_path):
    with _provider_quoting_the_key(f'r = llm_query_batched(["{SUB_CALL}"])\nFINAL("done")') as api_base:
        rlm = keyed_rlm(api_base, KEY, tmp_path / "history.json")
        assert rlm.run("What failed?", "ctx").answer == "done"
    errors = [record["error"] for record in json.loads((tmp_path / "history.json").read_text()) if record["error"]]
    assert errors and all("may not use this model" in error for error in errors)  # the failed sub-call is there
    assert not [error for error in errors if KEY in error], errors  # calls.py redacts this field: with which keys?


def test_rlm_ask_never_prints_the_environments_key_quoted_by_a_provider(tmp_path, monkeypatch):
    # what a CI job's log keeps; the provider answers every request 401, quoting the key it was sent
    from rlm.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)  # no .env file of the developer's
    (tmp_path / "c.txt").write_text("hello")
    out, err = io.StringIO(), io.StringIO()
    with serving(RefusesTheKey) as api_base, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["ask", "q", "--context", "c.txt", "--model", "openai/test-model", "--api-base", api_base])
    assert status != 0 and "APIKeyNotFoundError" in err.getvalue()
    assert KEY not in err.getvalue() + out.getvalue(), err.getvalue()[-400:]
