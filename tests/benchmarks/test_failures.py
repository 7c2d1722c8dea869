"""The failure classifier: each cause on a trajectory built to show it, and the rules' order."""

from __future__ import annotations

import pytest

from rlm.benchmarks.failures import CAUSES, classify, count_causes, final_literals, library_markers
from rlm.benchmarks.paper.item import PaperItem
from rlm.engine.result import StepRecord

COUNT = PaperItem("oolong", "count", "How many?", "x" * 400, "42", "numeric", 100, 0)  # needs a judgment per line
NEEDLE = PaperItem("sniah", "single_needle", "Number?", "y" * 400, "8598454", "exact_number", 100, 0)
HUGE_NEEDLE = PaperItem("sniah", "single_needle", "Number?", "y" * 80_000, "8598454", "exact_number", 20_000, 0)


def step(reply: str, code: str = "", output: str = "", error: str | None = None, n: int = 1) -> StepRecord:
    return StepRecord(n, reply, code, output, error)


LOOK = step("```python\nprint(len(context))\n```", "print(len(context))", "400")


@pytest.mark.parametrize(
    ("item", "answer", "finish", "trajectory", "error", "cause"),
    [
        (COUNT, "Final answer: (nothing printed)", "final", [LOOK], "", "library_text"),
        (COUNT, "", "final", [step("x", "x=1", "", "SandboxError: the sandbox worker died")], "", "sandbox_error"),
        (COUNT, "", "error", [], "error: SandboxError: could not start", "sandbox_error"),
        (COUNT, "7", "budget_time", [LOOK], "", "timeout"),
        (COUNT, "7", "final", [step("```python\nwhile 1: pass\n```", "while 1: pass", "", "TimeoutError: the step "
                                    "ran longer than 30 s and was stopped.")], "", "timeout"),
        (COUNT, "", "error", [], "error: ProviderError: connection refused", "run_error"),
        (COUNT, "7", "final", [LOOK, step('FINAL("42")', n=2), step('FINAL("7")', n=3)], "", "refused_right_answer"),
        (COUNT, "7", "max_iterations", [LOOK, step("```python\nprint(1)\n```", "print(1)", "1", n=2)], "",
         "out_of_steps"),
        (COUNT, "80", "final", [step("```python\nprint(context[:9])\n```", "print(context[:9])", "4,698,280"),
                                step('FINAL("80")', n=2)], "", "guessed"),
        (COUNT, "", "unfounded", [LOOK, step('FINAL("7")', n=2)], "", "guessed"),
        (NEEDLE, "1234567", "final", [step("```python\nprint(re.findall(r'\\d{7}', context))\n```", "print(...)",
                                            "['1234567', '8598454']"), step("FINAL(1234567)", n=2)], "",
         "misread_output"),
        (HUGE_NEEDLE, "999", "final", [step("```python\nn = len(context)//80\nFINAL(str(n))\n```",
                                            "n = len(context)//80\nFINAL(str(n))", "")], "", "never_decomposed"),
        (COUNT, "12", "final", [step("```python\nn = sum(llm_query_batched(['q']) == 'x')\nFINAL(str(n))\n```",
                                     "n = sum(llm_query_batched(['q']) == 'x')\nFINAL(str(n))", "")], "",
         "wrong_code"),
        (NEEDLE, "999", "final", [step("```python\nn = len(context)//80\nprint(n)\n```", "n = len(context)//80",
                                       "5"), step("FINAL_VAR(n)", n=2)], "", "wrong_code"),
    ],
)  # fmt: skip
def test_each_cause_is_assigned_by_its_rule(item, answer, finish, trajectory, error, cause):
    assert classify(item, answer, finish, trajectory, error) == cause


def test_library_text_includes_every_sentence_of_the_engine_prompts():
    from rlm.engine import prompts

    markers = library_markers()
    assert "(nothing printed)" in markers
    note = next(v for k, v in vars(prompts).items() if k.endswith("_NOTE") and isinstance(v, str))
    assert classify(COUNT, f"My answer. {note}", "final", [LOOK]) == "library_text"


def test_trajectories_saved_as_dicts_classify_like_step_records():
    saved = [{"reply": 'FINAL("80")', "code": "", "output": "", "error": None}]
    assert classify(COUNT, "80", "final", saved) == "guessed"


def test_counts_list_every_cause_in_rule_order():
    counts = count_causes(["guessed", "guessed", "timeout"])
    assert list(counts) == list(CAUSES) and counts["guessed"] == 2 and counts["timeout"] == 1
    assert sum(counts.values()) == 3


def test_final_literals_are_read_as_the_engine_reads_them():
    code = '```python\n# FINAL("in a comment")\nx = \'FINAL("in a string")\'\nFINAL("7")\nFINAL(-3)\nFINAL(n)\n```'
    assert final_literals(code) == ["7", "-3"]
    assert final_literals("The count is 12.\nFINAL(12)") == ["12"]
    assert final_literals('I will call FINAL("5") once I know it.') == []  # mid-sentence prose is no FINAL


LINES = "\n".join(f"Date: May {i % 28 + 1:02d}, 2023 || User: {1000 + i} || Instance: question {i}" for i in range(90))
DATED_COUNT = PaperItem("oolong", "count", "How many?", LINES, "12", "numeric", 400, 0)
LINE_NEEDLE = PaperItem("sniah", "single_needle", "Number?", LINES + "\nThe magic number is 8598454.", "8598454",
                        "exact_number", 400, 0)  # fmt: skip


def test_a_sample_line_that_holds_the_gold_by_chance_is_no_misread_output():
    finish = step("```python\nFINAL(n)\n```", "FINAL(n)", n=2)  # a computed answer: not a guess
    sample = "\n".join(LINES.splitlines()[10:13])  # "May 12" is among them: a date (of four), not the count
    trajectory = [step("```python\nprint(sample)\n```", "print(sample)", sample), finish]
    assert classify(DATED_COUNT, "0", "final", trajectory) == "never_decomposed"
    computed = [step("```python\nprint(n)\n```", "print(n)", "matches: 12"), finish]
    assert classify(DATED_COUNT, "0", "final", computed) == "misread_output"
    # a rare value in a copied line is what the line says: the needle's number was shown
    shown = [step("```python\nprint(hit)\n```", "print(hit)", "The magic number is 8598454."), finish]
    assert classify(LINE_NEEDLE, "85", "final", shown) == "misread_output"
