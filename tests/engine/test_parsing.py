"""FINAL / FINAL_VAR and code-block parsing: examples of every edge case, plus properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rlm.engine.parsing import count_code_blocks, cut_after_code, extract_code, find_text_final


def test_code_block_with_python_tag_is_extracted():
    assert extract_code("look:\n```python\nprint(1)\n```\ndone") == "print(1)"


def test_untagged_blocks_count_as_code_when_no_block_is_labelled():
    reply = '```json\n{"x": 1}\n```\n```\na = 1\n```\n```\nb = 2\n```'
    assert extract_code(reply) == "a = 1"
    assert count_code_blocks(reply) == 2


def test_labelled_blocks_win_and_an_untagged_block_after_them_is_invented_output():
    reply = "Find it.\n```python\nprint(len(hits))\n```\nThere are 10 hits:\n```\nMarble engine violet.\n```"
    assert extract_code(reply) == "print(len(hits))"
    reply = "```\nnot code\n```\n```repl\nb = 2\n```\n```python\na = 1\n```"
    assert (extract_code(reply), count_code_blocks(reply)) == ("b = 2", 2)


def test_text_after_the_last_code_block_is_cut_from_the_remembered_reply():
    reply = "Look.\n```python\nprint(len(context))\n```\nThe context is 240,078 characters long."
    assert cut_after_code(reply) == "Look.\n```python\nprint(len(context))\n```"
    assert cut_after_code("FINAL(4)") == "FINAL(4)"
    assert cut_after_code("```python\na = 1\n```\nIt is 1.\n```python\nb = 2\n```") == "```python\na = 1\n```"


def test_unterminated_block_at_the_end_is_still_code():
    assert extract_code("```python\nprint('cut off')") == "print('cut off')"


def test_reply_without_code_has_none():
    assert extract_code("I think the answer is 4.") is None


def test_final_with_quoted_string_is_unquoted():
    assert find_text_final('FINAL("Paris")').literal == "Paris"


def test_final_with_nested_parentheses_keeps_them():
    final = find_text_final("FINAL(the answer (roughly) is f(x) = 2)")
    assert final.literal == "the answer (roughly) is f(x) = 2"


def test_final_with_parenthesis_inside_quotes_is_not_closed_early():
    assert find_text_final("FINAL('a ) b')").literal == "a ) b"


def test_final_with_number_keeps_it_as_written():
    assert find_text_final("FINAL(42)").literal == "42"
    assert find_text_final("FINAL(3.5)").literal == "3.5"
    assert find_text_final("FINAL(00)").literal == "00"
    assert find_text_final("FINAL(1_000)").literal == "1_000"


def test_multiline_final_keeps_all_lines():
    final = find_text_final('FINAL("""line one\nline two)\nline three""")')
    assert final.literal == "line one\nline two)\nline three"


def test_unquoted_multiline_final():
    assert find_text_final("FINAL(first\nsecond)").literal == "first\nsecond"


def test_final_cut_off_before_closing_parenthesis_keeps_the_text():
    assert find_text_final("FINAL(the answer is 7").literal == "the answer is 7"


def test_final_mentioned_mid_sentence_is_not_an_answer():
    assert find_text_final("Once I know it I will call FINAL(answer).") is None


def test_final_inside_code_block_is_not_a_text_final():
    assert find_text_final("```python\nFINAL(x)\n```") is None


def test_final_var_gives_the_variable_name():
    assert find_text_final("FINAL_VAR(result)").variable_name == "result"
    assert find_text_final("FINAL_VAR('result')").variable_name == "result"


def test_bare_identifier_final_may_name_a_variable():
    assert find_text_final("FINAL(answer)").variable_name == "answer"
    assert find_text_final("FINAL('answer')").variable_name is None


def test_final_after_code_block_in_same_reply_is_found():
    reply = "```python\nx = 1\n```\nFINAL(done)"
    assert extract_code(reply) == "x = 1"
    assert find_text_final(reply).literal == "done"


def test_markdown_decorated_final_line_is_recognised():
    assert find_text_final("**FINAL(yes)**").literal == "yes"


def test_apostrophe_in_prose_does_not_swallow_the_rest():
    assert find_text_final("FINAL(it's 5)").literal == "it's 5"


_safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="()'\"`\\\r"), min_size=1
).filter(lambda s: s.strip() == s and "\n" not in s and "final" not in s.lower())


@given(_safe_text)
def test_any_plain_answer_round_trips_through_text_final(answer):
    assert find_text_final(f"Some reasoning.\nFINAL({answer})").literal == answer


@given(st.text(max_size=200).filter(lambda s: "final" not in s.lower()))
def test_text_without_final_never_yields_an_answer(text):
    assert find_text_final(text) is None


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_quoted_answers_round_trip_exactly(answer):
    assert find_text_final(f"FINAL({answer!r})").literal == answer


@given(st.text(max_size=300))
def test_parsers_never_raise(text):
    extract_code(text)
    final = find_text_final(text)
    if final is not None:
        _ = final.literal, final.variable_name


def test_capitalised_final_at_line_start_counts():
    assert find_text_final("Done.\nFinal(405)").literal == "405"
    assert find_text_final("Final_var(total)").variable_name == "total"
