"""Program files: errors name the file and the fix; another model's program loads with a warning."""

from __future__ import annotations

import json

import pytest

from rlm import RLM
from rlm.optimize import Program, ProgramFileError, ProgramModelWarning, read_program
from rlm.testing import scripted_lm

DEMO = {
    "query": "Which colour is the kite?",
    "context_info": "A str of 40 characters.",
    "history": [{"reply": "```python\nprint(context)\n```", "observation": "Output:\nthe kite is red"}],
    "reply": 'FINAL("red")',
}


def write(path, **changes):
    data = {"format": "rlm-program", "version": 1, "model": "scripted/root", "demos": [DEMO], "instructions": None}
    path.write_text(json.dumps({**data, **changes}))
    return path


def test_a_missing_file_is_named_with_the_command_that_makes_one(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ProgramFileError, match=r"nowhere\.json' does not exist.*rlm optimize --out"):
        RLM(model=scripted_lm([])[0], program=missing)


def test_a_corrupt_file_is_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "rlm-program", "vers')
    with pytest.raises(ProgramFileError, match=r"broken\.json' is not readable JSON"):
        read_program(broken)


def test_a_json_file_that_is_no_program_is_named(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"step": {"demos": []}}')
    with pytest.raises(ProgramFileError, match=r"other\.json' is not an rlm program file"):
        read_program(other)


def test_another_format_version_names_both_versions_and_the_fix(tmp_path):
    path = write(tmp_path / "future.json", version=2)
    with pytest.raises(ProgramFileError, match=r"format version 2; this recursive-llm reads version 1.*rlm optimize"):
        read_program(path)


@pytest.mark.parametrize(
    "damage",
    [{"demos": "none"}, {"demos": [{"query": "q"}]}, {"model": 3}, {"demos": [{**DEMO, "history": [{"reply": 1}]}]}],
)
def test_a_damaged_program_is_refused(tmp_path, damage):
    with pytest.raises(ProgramFileError, match="damaged"):
        read_program(write(tmp_path / "damaged.json", **damage))


def test_a_program_for_another_model_loads_with_a_warning(tmp_path):
    path = write(tmp_path / "p.json", model="openai/some-other-model")
    lm, engine = scripted_lm(['FINAL("red")'])
    with pytest.warns(ProgramModelWarning, match="compiled for model 'openai/some-other-model', not 'scripted/root'"):
        rlm = RLM(model=lm, program=path)
    rlm.completion("Which colour is the car?", "the car is red")
    assert DEMO["reply"] in [m["content"] for m in engine.calls[0]]


def test_a_program_for_the_same_model_loads_quietly(tmp_path, recwarn):
    RLM(model=scripted_lm([])[0], program=write(tmp_path / "p.json"))
    assert not [w for w in recwarn if issubclass(w.category, ProgramModelWarning)]


def test_rewritten_instructions_replace_the_system_prompt(tmp_path):
    path = write(tmp_path / "p.json", instructions="Answer with code. Be brief.", demos=[])
    lm, engine = scripted_lm(['FINAL("red")'])
    RLM(model=lm, program=path).completion("Which colour is the car?", "the car is red")
    assert engine.calls[0][0] == {"role": "system", "content": "Answer with code. Be brief."}


def test_save_then_read_gives_the_same_program(tmp_path):
    program = Program(model="m", demos=(DEMO,), instructions=None, info={"runs": []})
    assert read_program(program.save(tmp_path / "deep" / "p.json")) == program
