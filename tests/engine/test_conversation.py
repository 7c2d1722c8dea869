"""The root conversation: carried between a session's questions, compacted by the model's own summary."""

from __future__ import annotations

from typing import Any

import pytest

from rlm.config import RLMConfig
from rlm.engine import prompts
from rlm.engine.conversation import (
    COMPACT_AT_SHARE,
    FALLBACK_WINDOW_TOKENS,
    SUMMARY_REQUEST,
    Conversation,
    compact_threshold,
)
from rlm.errors import BudgetExceededError, ProviderError


def turn(n: int, size: int = 10) -> dict[str, str]:
    return {"reply": f"reply {n}", "observation": f"Output:\nout {n} " + "x" * size}


def inputs(query: str, history: list[dict[str, str]], info: str = "info") -> dict[str, Any]:
    return {"query": query, "context_info": info, "history": history}


def prepare(conversation: Conversation, step_inputs: dict[str, Any], summary: str | Exception = "SUMMARY"):
    """Run `prepare` as a driver would: answer its compaction request, if any, with `summary`."""
    plan = conversation.prepare(step_inputs)
    try:
        asked = next(plan)
    except StopIteration as done:
        return done.value, None
    try:
        if isinstance(summary, Exception):
            plan.throw(summary)
        else:
            plan.send(summary)
    except StopIteration as done:
        return done.value, asked
    raise AssertionError("prepare asked more than once")


def test_a_short_conversation_is_sent_as_the_node_wrote_it():
    conversation = Conversation(compact_at_tokens=100_000)
    step = inputs("q1", [turn(1), turn(2)])
    sent, asked = prepare(conversation, step)
    assert asked is None and sent == step


def test_the_next_question_follows_the_first_after_its_answer():
    conversation = Conversation(compact_at_tokens=100_000)
    conversation.begin_question()
    prepare(conversation, inputs("q1", [turn(1)], "info 1"))
    conversation.end_question("```python\nFINAL(n)\n```")
    conversation.begin_question()
    sent, _ = prepare(conversation, inputs("q2", [turn(2)], "info 2"))
    # The first message stays the first question's, byte for byte: providers' prefix caches hold.
    assert (sent["query"], sent["context_info"]) == ("q1", "info 1")
    bridge = sent["history"][1]
    assert sent["history"][0] == turn(1) and sent["history"][2] == turn(2)
    assert bridge["reply"] == "```python\nFINAL(n)\n```"
    assert bridge["observation"].endswith(prompts.first_message("q2", "info 2"))


def test_near_the_limit_the_older_turns_become_the_models_summary():
    conversation = Conversation(compact_at_tokens=(len(prompts.INSTRUCTIONS) + 3000) // 3)
    history = [turn(1, 1000), turn(2, 1000), turn(3, 1000)]
    sent, asked = prepare(conversation, inputs("q1", history))
    # The summary request goes with the turns it replaces, after the same prefix.
    assert asked is not None and asked.purpose == "compact"
    assert asked.inputs["history"][:1] == history[:1]
    assert asked.inputs["history"][-1]["observation"] == f"{history[1]['observation']}\n\n{SUMMARY_REQUEST}"
    assert (sent["query"], sent["context_info"]) == ("q1", "info")
    summary, latest = sent["history"]
    assert summary["reply"] == "SUMMARY" and "The current task:\n\nQuery: q1" in summary["observation"]
    assert latest == history[-1]
    record = conversation.compactions[0]
    assert (record.question, record.step, record.turns_folded) == (1, 4, 2)
    assert record.tokens_after < conversation.compact_at_tokens <= record.tokens_before


def test_later_steps_keep_the_summary_and_add_their_turns():
    conversation = Conversation(compact_at_tokens=(len(prompts.INSTRUCTIONS) + 3000) // 3)
    history = [turn(1, 1000), turn(2, 1000), turn(3, 1000)]
    prepare(conversation, inputs("q1", history))
    sent, asked = prepare(conversation, inputs("q1", [*history, turn(4)]))
    assert asked is None
    assert [t["reply"] for t in sent["history"]] == ["SUMMARY", "reply 3", "reply 4"]


def test_a_summary_alone_is_not_summarised_again():
    conversation = Conversation(compact_at_tokens=10)  # below the prompt's own size
    history = [turn(1), turn(2)]
    first, asked = prepare(conversation, inputs("q1", history))
    assert asked is not None
    again, asked_again = prepare(conversation, inputs("q1", history))
    assert asked_again is None and again == first


def test_without_budget_for_a_summary_the_step_goes_uncompacted():
    conversation = Conversation(compact_at_tokens=10)
    step = inputs("q1", [turn(1), turn(2)])
    sent, asked = prepare(conversation, step, summary=BudgetExceededError("spent", limit="max_llm_calls"))
    assert asked is not None and sent == step and conversation.compactions == []


def test_a_failed_summary_call_leaves_the_step_uncompacted_and_is_not_retried_on_every_step():
    conversation = Conversation(compact_at_tokens=10)
    step = inputs("q1", [turn(1), turn(2)])
    sent, asked = prepare(conversation, step, summary=ProviderError("the provider failed after retries"))
    assert asked is not None and sent == step and conversation.compactions == []
    _, asked_again = prepare(conversation, inputs("q1", [turn(1), turn(2), turn(3)]))
    assert asked_again is None  # not before the conversation grew by a quarter
    _, asked_later = prepare(conversation, inputs("q1", [turn(n, 1000) for n in range(1, 5)]))
    assert asked_later is not None


def test_a_later_questions_task_survives_when_its_turn_is_folded():
    conversation = Conversation(compact_at_tokens=(len(prompts.INSTRUCTIONS) + 2300) // 3)
    conversation.begin_question()
    prepare(conversation, inputs("q1", [turn(1, 1000), turn(2, 1000)]))
    conversation.end_question("FINAL(7)")
    conversation.begin_question()
    task = "Answer as an int. Your variables from earlier queries: total = 7"
    prepare(conversation, inputs("q2", [], task))  # compacts: the bridge to q2 is kept verbatim
    sent, asked = prepare(conversation, inputs("q2", [turn(3, 1500), turn(4, 1500)], task))
    assert asked is not None
    assert task in sent["history"][0]["observation"]  # the summary's turn restates q2's task


def test_an_empty_summary_replaces_nothing():
    conversation = Conversation(compact_at_tokens=10)
    step = inputs("q1", [turn(1), turn(2)])
    sent, _ = prepare(conversation, step, summary="  ")
    assert sent == step and conversation.compactions == []


def test_at_a_new_question_the_earlier_one_is_summarised_and_the_new_one_kept_verbatim():
    conversation = Conversation(compact_at_tokens=(len(prompts.INSTRUCTIONS) + 2300) // 3)
    conversation.begin_question()
    _, asked = prepare(conversation, inputs("q1", [turn(1, 1000), turn(2, 1000)]))
    assert asked is None
    conversation.end_question("FINAL(7)", ["out 1", "out 2"])
    conversation.begin_question()
    long_info = "info " + "y" * 600
    sent, asked = prepare(conversation, inputs("q2", [], long_info))
    assert asked is not None
    summary, bridge = sent["history"]
    assert summary["reply"] == "SUMMARY" and bridge["reply"] == "FINAL(7)"
    assert prompts.first_message("q2", long_info) in bridge["observation"]
    assert conversation.compactions[0].question == 2
    # What earlier questions' code printed stays evidence for answers, though no longer in the prompt.
    assert conversation.evidence() == ["out 1", "out 2"]
    # The next question starts from the summary, the bridge and the second question's turns.
    conversation.end_question("FINAL(8)")
    conversation.begin_question()
    sent, _ = prepare(conversation, inputs("q3", []))
    assert [t["reply"] for t in sent["history"]][:3] == ["SUMMARY", "FINAL(7)", "FINAL(8)"]


def test_a_question_that_failed_is_bridged_without_an_answer():
    conversation = Conversation(compact_at_tokens=100_000)
    conversation.begin_question()
    prepare(conversation, inputs("q1", [turn(1)]))
    conversation.begin_question()  # q1 raised: end_question never came
    sent, _ = prepare(conversation, inputs("q2", []))
    assert [t["reply"] for t in sent["history"]] == ["(That query ended without an answer.)"]


def test_the_threshold_comes_from_the_setting_then_the_models_window_then_a_fallback():
    class Named:
        def __init__(self, model: str) -> None:
            self.model = model

    assert compact_threshold(5000, Named("openai/gpt-4o-mini")) == 5000
    assert compact_threshold(None, Named("openai/gpt-4o-mini")) == int(128_000 * COMPACT_AT_SHARE)
    assert compact_threshold(None, Named("openai/some-local-server")) == int(FALLBACK_WINDOW_TOKENS * COMPACT_AT_SHARE)
    assert Conversation.for_node(RLMConfig(compact_at_tokens=1234), Named("x")).compact_at_tokens == 1234


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "many"])
def test_compact_at_tokens_must_be_a_positive_integer(bad):
    from rlm.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="compact_at_tokens must be a positive integer"):
        RLMConfig(compact_at_tokens=bad)
