"""The REPL loop of a node, driven by a scripted LM through the real sandbox."""

from __future__ import annotations

import threading
import time

import pytest

from rlm import RLM, MaxIterationsError
from rlm.errors import NoAnswerError
from rlm.sandbox.base import SandboxLimits
from rlm.sandbox.local import LocalSandbox
from tests.conftest import last_user_message

NEEDLE_CONTEXT = "filler text. " * 5000 + "The magic number is 4817. " + "more filler. " * 2000


def code(src: str) -> str:
    return f"Let me run this.\n```python\n{src}\n```"


def test_final_called_in_code_ends_the_run_with_that_answer(make_lm):
    lm, _ = make_lm([code("import re\nm = re.search(r'magic number is (\\d+)', context)\nFINAL(m.group(1))")])
    result = RLM(model=lm).run("What is the magic number?", NEEDLE_CONTEXT)
    assert result.answer == "4817"
    assert result.finish_reason == "final"
    assert result.iterations == 1


def test_variables_persist_between_steps_and_output_returns_to_the_model(make_lm):
    lm, engine = make_lm(
        [
            code("i = context.find('magic')\nprint(context[i:i+25])"),
            code("FINAL(context[i+16:i+20])"),
        ]
    )
    assert RLM(model=lm).completion("magic?", NEEDLE_CONTEXT) == "4817"
    second_prompt = last_user_message(engine.calls[1])
    assert "magic number is 4817" in second_prompt
    assert "Step 2 of 20." in second_prompt


def test_text_final_outside_code_is_accepted(make_lm):
    lm, _ = make_lm([code("print(context[context.find('magic'):][:30])"), "The number is clear.\nFINAL(4817)"])
    result = RLM(model=lm).run("magic?", NEEDLE_CONTEXT)
    assert (result.answer, result.finish_reason, result.iterations) == ("4817", "final", 2)


def test_text_final_naming_a_variable_returns_its_value(make_lm):
    lm, _ = make_lm([code("answer = 'from the variable'"), "FINAL(answer)"])
    assert RLM(model=lm).completion("q", "some context") == "from the variable"


def test_final_var_as_text_returns_the_variable(make_lm):
    lm, _ = make_lm([code("total = sum(range(10))"), "FINAL_VAR(total)"])
    assert RLM(model=lm).completion("q", "ctx") == "45"


def test_final_var_of_missing_name_is_reported_to_the_model(make_lm):
    lm, engine = make_lm(["FINAL_VAR(nothing_here)", code("nothing_here = 'ok'\nFINAL_VAR('nothing_here')")])
    assert RLM(model=lm).completion("q", "ctx") == "ok"
    feedback = last_user_message(engine.calls[1])
    assert "no variable named 'nothing_here'" in feedback


def test_code_and_text_final_in_one_reply_runs_the_code_first(make_lm):
    lm, _ = make_lm(["```python\nresult = context.upper()\n```\nFINAL_VAR(result)"])
    assert RLM(model=lm).completion("q", "shout") == "SHOUT"


def test_text_final_is_ignored_when_the_code_before_it_failed(make_lm):
    lm, engine = make_lm(["```python\nx = 1/0\n```\nFINAL(guess)", "FINAL(recovered)"])
    assert RLM(model=lm).completion("q", "ctx") == "recovered"
    assert "ZeroDivisionError" in last_user_message(engine.calls[1])


def test_invented_output_after_the_code_is_neither_run_nor_remembered(make_lm):
    invented = "There are 10 hits:\n```\nfiller text. filler text.\n```"
    lm, engine = make_lm([code("hits = context.count('magic')\nprint(hits)") + "\n" + invented, "FINAL(hits)"])
    result = RLM(model=lm).run("How many magic lines?", NEEDLE_CONTEXT)
    assert (result.answer, result.trajectory[0].error) == ("1", None)
    second_prompt = "\n".join(m["content"] for m in engine.calls[1])
    assert "There are 10 hits" not in second_prompt
    assert "Output:\n1" in second_prompt
    assert "There are 10 hits" in result.trajectory[0].reply  # the record keeps what the model wrote


def test_errors_in_code_go_back_to_the_model_and_the_run_continues(make_lm):
    lm, engine = make_lm([code("undefined_name + 1"), code("FINAL('fixed')")])
    assert RLM(model=lm).completion("q", "ctx") == "fixed"
    assert "NameError" in last_user_message(engine.calls[1])


def test_reply_without_code_or_final_gets_a_nudge(make_lm):
    lm, engine = make_lm(["I am thinking about it.", "FINAL(done)"])
    assert RLM(model=lm).completion("q", "ctx") == "done"
    assert "no code to run and no FINAL" in last_user_message(engine.calls[1])
    assert "opens with ```python" in last_user_message(engine.calls[1])


def test_each_root_prompt_extends_the_previous_one(make_lm):
    lm, engine = make_lm([code("a = 1"), code("b = 2"), code("c = 3"), "FINAL(x)"])
    RLM(model=lm).completion("q", "ctx")
    for earlier, later in zip(engine.calls, engine.calls[1:], strict=False):
        assert later[: len(earlier)] == earlier


def test_out_of_iterations_asks_for_a_last_answer_and_marks_it(make_lm):
    lm, engine = make_lm([code("x = 1"), code("x = 2"), "FINAL(best effort)"])
    result = RLM(model=lm, max_iterations=2).run("q", "ctx")
    assert result.answer == "best effort"
    assert result.finish_reason == "max_iterations"
    assert "You have used all 2 steps" in last_user_message(engine.calls[-1])


def test_a_last_reply_without_final_is_no_answer_not_the_reply_text(make_lm):
    lm, _ = make_lm([code("x = 1"), "The answer is probably 12."])
    result = RLM(model=lm, max_iterations=1).run("q", "ctx")
    assert (result.answer, result.finish_reason) == ("", "no_answer")


def test_after_each_output_the_model_is_asked_whether_to_finish(make_lm):
    # small models ran on after an output had shown the answer; the choice is put to them each step
    lm, engine = make_lm([code("x = 3"), code("print(x)"), code("print(y)"), "FINAL(3)"])
    assert RLM(model=lm, max_iterations=5).completion("q", "x" * 5000) == "3"
    assert "finish with FINAL now" not in engine.calls[0][-1]["content"]
    # nothing printed, or an error: no output to finish from (asked then, small models guess)
    assert last_user_message(engine.calls[1]).endswith("Step 2 of 5.")
    assert last_user_message(engine.calls[3]).endswith("Step 4 of 5.")
    step_three = last_user_message(engine.calls[2])
    assert "Step 3 of 5. If an output above shows what the query asks for, finish with FINAL now" in step_three
    assert "matched nothing" in step_three


def test_a_block_of_comments_only_is_not_run_and_the_model_is_told_so(make_lm):
    # a model wrote "# No code needed here" after an output had shown the answer
    comments = code("# No code needed here")
    lm, engine = make_lm([comments, code("print(context.count('x'))"), comments, "FINAL(5000)"])
    result = RLM(model=lm, max_iterations=6).run("How many x?", "x" * 5000)
    told = last_user_message(engine.calls[1])
    assert "held only comments, so nothing ran" in told and "no code to run" not in told
    assert "already shows the answer, call FINAL" in last_user_message(engine.calls[3])
    assert (result.answer, result.finish_reason) == ("5000", "final")
    assert result.trajectory[0].code == ""  # nothing ran


def test_the_same_comments_only_block_again_and_again_is_a_loop(make_lm):
    comments = code("# No code needed here")
    lm, _ = make_lm([comments] * 3 + ["FINAL(x)"])
    result = RLM(model=lm, max_iterations=8).run("q", "x" * 5000)
    assert result.iterations == 3  # ended as a loop, not after all 8 steps
    assert result.finish_reason in ("no_answer", "unfounded")


def test_the_last_step_names_no_placeholder_the_model_could_copy_as_a_variable(make_lm):
    # a small model told "Call FINAL(answer) now" wrote FINAL(answer): a NameError, no answer
    lm, engine = make_lm([code("x = 1"), code("n = 7\nprint(n)"), "FINAL(n)"])
    result = RLM(model=lm, max_iterations=2).run("q", "ctx")
    last_step, answer_now = last_user_message(engine.calls[1]), last_user_message(engine.calls[2])
    assert "this is the last step" in last_step and "Finish now with FINAL(" in last_step
    assert "FINAL(answer)" not in last_step + answer_now
    assert (result.answer, result.finish_reason) == ("7", "max_iterations")


def test_strict_mode_raises_no_answer_error_with_the_last_reply(make_lm):
    # the same code three times ends the loop ("repeated"); its last step echoes our placeholder
    lm, _ = make_lm([code("x = 1")] * 3 + ["Final answer: (nothing printed)"])
    with pytest.raises(NoAnswerError, match="drop strict=True") as caught:
        RLM(model=lm, strict=True).run("q", NEEDLE_CONTEXT)
    assert caught.value.reason == "no_answer"
    assert caught.value.last_reply == "Final answer: (nothing printed)"


def test_strict_mode_raises_max_iterations_error(make_lm):
    lm, _ = make_lm([code("x = 1"), code("x = 2")])
    with pytest.raises(MaxIterationsError, match=r"^Max iterations exceeded"):
        RLM(model=lm, max_iterations=2, strict=True).completion("q", "ctx")


def test_repeating_the_same_code_goes_straight_to_the_answer(make_lm):
    same = code("print(context[:10])")
    lm, engine = make_lm([same, same, same, "FINAL(stopped repeating)"])
    result = RLM(model=lm, max_iterations=20).run("q", "some context here")
    assert result.finish_reason == "repeated"
    assert result.answer == "stopped repeating"
    assert len(engine.calls) == 4
    assert "already ran this exact code" in last_user_message(engine.calls[2])


def test_llm_query_uses_the_recursive_model(make_lm):
    root, _ = make_lm([code("print(llm_query('What is 2+2? ' + context))"), "FINAL(4)"])
    sub, sub_engine = make_lm(["four"], model="scripted/sub")
    result = RLM(model=root, recursive_model=sub).run("q", "numbers")
    assert result.answer == "4"
    assert sub_engine.calls[0][-1]["content"] == "What is 2+2? numbers"
    assert result.usage["scripted/sub"].calls == 1
    assert result.usage["scripted/root"].calls == 2


def test_llm_query_batched_runs_concurrently_and_keeps_order(make_lm):
    root, root_engine = make_lm([code("r = llm_query_batched([f'item {i}' for i in range(8)])\nprint(r)"), "FINAL(ok)"])
    active = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def answer(messages):
        with lock:
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
        time.sleep(0.1)
        with lock:
            active["now"] -= 1
        return messages[-1]["content"].upper()

    sub, _ = make_lm(answer, model="scripted/sub")
    RLM(model=root, recursive_model=sub, max_concurrency=4).completion("q", "ctx")
    printed = last_user_message(root_engine.calls[1])
    assert "['ITEM 0', 'ITEM 1', 'ITEM 2', 'ITEM 3', 'ITEM 4', 'ITEM 5', 'ITEM 6', 'ITEM 7']" in printed
    assert active["peak"] == 4


def test_one_failed_prompt_does_not_fail_the_batch(make_lm):
    root, root_engine = make_lm([code("print(llm_query_batched(['good', 42, 'fine']))"), "FINAL(ok)"])
    sub, _ = make_lm(lambda m: "answered", model="scripted/sub")
    RLM(model=root, recursive_model=sub).completion("q", "ctx")
    printed = last_user_message(root_engine.calls[1])
    assert "'answered', 'Error: RLMError: prompts must be text, got int', 'answered'" in printed


def test_recursive_llm_runs_a_child_node_on_the_slice(make_lm):
    root, root_engine = make_lm(
        [code("half = context[:len(context)//2]\nprint(recursive_llm('count the a', half))"), "FINAL(done)"]
    )
    child_replies = [code("FINAL(str(context.count('a')))")]
    sub, sub_engine = make_lm(child_replies, model="scripted/sub")
    result = RLM(model=root, recursive_model=sub, max_depth=3).run("q", "aaaa" + "bbbb")
    assert "Output:\n4" in last_user_message(root_engine.calls[1])
    assert "Query: count the a" in sub_engine.calls[0][1]["content"]
    assert result.depth == 1


def test_recursive_llm_at_max_depth_is_a_plain_call_with_the_slice(make_lm):
    root, root_engine = make_lm([code("print(recursive_llm('summarise', context[:5]))"), "FINAL(done)"])
    sub, sub_engine = make_lm(["a summary"], model="scripted/sub")
    result = RLM(model=root, recursive_model=sub, max_depth=1).run("q", "abcdefgh")
    assert sub_engine.calls[0] == [{"role": "user", "content": "summarise\n\nContext:\nabcde"}]
    assert "a summary" in last_user_message(root_engine.calls[1])
    assert result.depth == 0


def test_context_is_loaded_into_the_sandbox_once_per_node(make_lm):
    loads = []

    class CountingSandbox(LocalSandbox):
        def load(self, context):
            loads.append(len(context))
            super().load(context)

    from rlm import RLMConfig, RLMModule

    lm, _ = make_lm([code("a = 1"), code("b = 2"), code("c = 3"), "FINAL(x)"])
    module = RLMModule(RLMConfig(), lm, sandbox_factory=lambda limits: CountingSandbox(limits))
    module(query="q", context="a context")
    assert loads == [9]


def test_the_root_prompt_holds_a_description_not_the_context(make_lm):
    lm, engine = make_lm(["```python\nFINAL(context[:1])\n```"])
    big = "0123456789" * 100_000
    RLM(model=lm).completion("q", big)
    prompt = "".join(m["content"] for m in engine.calls[0])
    assert "1,000,000 characters" in prompt
    assert len(prompt) < 6000


def test_multi_document_context_is_described_by_names_and_sizes(make_lm):
    lm, engine = make_lm([code("FINAL(str(sorted(context)))")])
    answer = RLM(model=lm).completion("q", {"a.txt": "alpha", "b.txt": "beta beta"})
    assert answer == "['a.txt', 'b.txt']"
    task = engine.calls[0][1]["content"]
    assert "dict of 2 documents" in task and "'b.txt': str, 9 chars" in task


def test_llm_call_budget_stops_the_tree_with_a_last_answer_inside_the_budget(make_lm):
    lm, _ = make_lm([code("x = 1"), code("x = 2"), "FINAL(partial)"])
    result = RLM(model=lm, max_llm_calls=3).run("q", "ctx")
    assert result.finish_reason == "budget"
    assert result.answer == "partial"
    assert result.llm_calls == 3  # two steps, then the last answer the budget holds a call back for


def test_subcalls_past_the_budget_fail_inside_the_code_not_the_run(make_lm):
    root, root_engine = make_lm([code("print(llm_query('a'))\nprint(llm_query('b'))"), "FINAL(done)"])
    sub, _ = make_lm(lambda m: "sub answer", model="scripted/sub")
    result = RLM(model=root, recursive_model=sub, max_llm_calls=3).run("q", "ctx")
    assert "budget of 3 calls is used up" in last_user_message(root_engine.calls[1])
    assert result.answer == "done"


def test_sandbox_timeout_is_reported_and_the_run_continues(make_lm):
    lm, engine = make_lm([code("while True:\n    pass"), code("FINAL(str(len(context)))")])
    result = RLM(model=lm, exec_timeout=0.5).run("q", "12345")
    assert result.answer == "5"
    assert "TimeoutError" in last_user_message(engine.calls[1])


def test_sandbox_limits_reach_the_worker():
    sandbox = LocalSandbox(SandboxLimits(exec_timeout=5, memory_limit_mb=128, max_output_chars=100))
    with sandbox:
        sandbox.load("x")
        result = sandbox.execute("print('y' * 10_000)", lambda fn, args, kwargs: None)
    assert len(result.output) < 200 and "characters cut" in result.output


def test_an_answer_written_out_before_any_output_is_refused(make_lm):
    lm, engine = make_lm(["```python\nprint(len(context))\nFINAL('12345')\n```", code("FINAL(context[-5:])")])
    result = RLM(model=lm).run("magic?", NEEDLE_CONTEXT)
    assert result.answer == NEEDLE_CONTEXT[-5:]
    assert "so it is a guess" in last_user_message(engine.calls[1])
    assert result.iterations == 2


def test_a_guess_repeated_is_refused_every_time_and_never_becomes_the_answer(make_lm):
    replies = [
        code("print(len(context))"),
        code("hits = [l for l in context.split('. ') if 'magic' in l]\nprint(len(hits))") + "\nFINAL(16)",
        "FINAL(16)",
        "FINAL(16)",  # the last "answer now" step
    ]
    lm, engine = make_lm(replies)
    result = RLM(model=lm, max_iterations=3).run("How many magic sentences?", NEEDLE_CONTEXT)
    assert "so it is a guess" in last_user_message(engine.calls[2])
    assert "so it is a guess" in last_user_message(engine.calls[3])
    assert (result.answer, result.finish_reason) == ("", "unfounded")


def test_an_answer_seen_in_an_output_or_naming_a_variable_is_accepted_after_code(make_lm):
    lm, _ = make_lm([code("print(context[context.find('magic'):][:30])"), code("n = 4817") + "\nFINAL(4817)"])
    assert RLM(model=lm).completion("magic?", NEEDLE_CONTEXT) == "4817"
    lm, _ = make_lm([code("n = context.count('magic')") + "\nFINAL_VAR(n)"])
    assert RLM(model=lm).completion("how many?", NEEDLE_CONTEXT) == "1"


def test_a_long_answer_written_from_what_the_model_read_is_not_held_up(make_lm):
    summary = "The context is filler text around one sentence that states the magic number, " * 2
    lm, engine = make_lm([code("print(len(context))"), f"FINAL({summary!r})"])
    assert RLM(model=lm).completion("Describe the context.", NEEDLE_CONTEXT) == summary
    assert len(engine.calls) == 2


def test_only_the_first_code_block_of_a_reply_runs(make_lm):
    reply = code("a = 1\nprint('first ran')") + "\nIt printed 1.\n```python\nFINAL('from block two')\n```"
    lm, engine = make_lm([reply, code("FINAL(str(a))")])
    assert RLM(model=lm).completion("q", NEEDLE_CONTEXT) == "1"
    second = last_user_message(engine.calls[1])
    assert "first ran" in second and "Only your first code block ran" in second


def test_an_immediate_answer_is_accepted_when_the_whole_context_was_shown(make_lm):
    lm, engine = make_lm(["FINAL(small)"])
    assert RLM(model=lm).completion("q", "a small context") == "small"
    assert len(engine.calls) == 1


def test_a_first_step_answer_computed_from_the_context_is_accepted(make_lm):
    lm, engine = make_lm([code("FINAL(str(context.count('magic')))")])
    assert RLM(model=lm).completion("how many?", NEEDLE_CONTEXT) == "1"
    assert len(engine.calls) == 1


def test_a_long_prose_final_that_an_output_showed_is_accepted_then_clipped(make_lm):
    # Grounding reads the answer whole: clipped first, it held a cut marker no output had shown and
    # was refused as a guess (the clip now comes only where the run keeps the answer).
    text = " ".join(f"word{i}" for i in range(400))
    lm, _ = make_lm([code("print(context)"), f'FINAL("{text}")'])
    result = RLM(model=lm, max_answer_chars=200).run("Repeat the context.", text)
    assert result.finish_reason == "final"
    assert result.answer.startswith("word0 word1") and result.answer.endswith("word399") and len(result.answer) < 400
