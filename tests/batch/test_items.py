"""Batch items: JSONL and Parquet, contexts inline / file / folder / glob, and the errors that stop a batch."""

from __future__ import annotations

import json

import pytest

from rlm.batch import read_items
from rlm.errors import ConfigurationError, ContextError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_items_with_every_kind_of_context_resolve_paths_against_the_items_file(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("alpha")
    (corpus / "sub" / "b.txt").write_text("beta")
    (corpus / "c.log").write_text("gamma")
    items_file = write_jsonl(tmp_path / "items.jsonl", [
        {"id": 1, "query": "inline?", "context": "some text"},
        {"id": "file", "query": "one file?", "context_path": "corpus/a.txt"},
        {"id": "folder", "query": "a folder?", "context_path": "corpus"},
        {"id": "glob", "query": "a glob?", "context_glob": "corpus/**/*.txt", "max_llm_calls": 5, "meta": {"x": 1}},
        {"id": "docs", "query": "documents?", "context": {"one": "1", "two": "2"}},
    ])  # fmt: skip
    monkeypatch.chdir("/")  # relative paths belong to the items file, not to where the command runs
    items = {item.id: item for item in read_items(items_file)}
    assert items["1"].context.load() == "some text"
    assert items["file"].context.load() == "alpha"
    assert items["folder"].context.load() == {
        "corpus/a.txt": "alpha",
        "corpus/c.log": "gamma",
        "corpus/sub/b.txt": "beta",
    }
    assert items["glob"].context.load() == {"a.txt": "alpha", "sub/b.txt": "beta"}
    assert items["glob"].settings == {"max_llm_calls": 5} and items["glob"].meta == {"x": 1}
    assert items["docs"].context.load() == {"one": "1", "two": "2"}


def test_items_sharing_a_context_share_its_key(tmp_path):
    items = read_items([
        {"id": "a", "query": "q1", "context_path": str(tmp_path)},
        {"id": "b", "query": "q2", "context_path": str(tmp_path)},
        {"id": "c", "query": "q3", "context": "other"},
    ])  # fmt: skip
    assert items[0].context.key == items[1].context.key != items[2].context.key


def test_parquet_items_read_like_jsonl(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.Table.from_pylist([
        {"id": "p1", "query": "q?", "context": "text one", "context_path": None, "max_iterations": None},
        {"id": "p2", "query": "q?", "context": None, "context_path": "doc.txt", "max_iterations": 3},
    ])  # fmt: skip
    pq.write_table(table, tmp_path / "items.parquet")
    (tmp_path / "doc.txt").write_text("from a file")
    items = read_items(tmp_path / "items.parquet")
    assert [i.context.load() for i in items] == ["text one", "from a file"]
    assert items[0].settings == {} and items[1].settings == {"max_iterations": 3}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"query": "q", "context": "c"}, "'id' is missing"),
        ({"id": "x", "context": "c"}, "'query' is missing"),
        ({"id": "x", "query": "q"}, "exactly one of context"),
        ({"id": "x", "query": "q", "context": "c", "context_path": "f"}, "got context, context_path"),
        ({"id": "x", "query": "q", "context": 5}, "inline 'context'"),
        ({"id": "x", "query": "q", "context": "c", "output": 3}, "type name"),
    ],
)
def test_malformed_items_stop_the_batch_before_it_starts(row, message):
    with pytest.raises(ConfigurationError, match=message):
        read_items([row])


def test_duplicate_ids_and_broken_json_lines_are_named(tmp_path):
    with pytest.raises(ConfigurationError, match="duplicate item id '7'"):
        read_items([{"id": 7, "query": "q", "context": "c"}, {"id": "7", "query": "q", "context": "c"}])
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"id": 1, "query": "q", "context": "c"}\n\n{"id": 2, "query": \n')
    with pytest.raises(ConfigurationError, match="line 3 is not JSON"):
        read_items(bad)


def test_a_missing_context_file_fails_when_that_item_loads_it(tmp_path):
    [item] = read_items([{"id": "x", "query": "q", "context_path": str(tmp_path / "nope.txt")}])
    with pytest.raises(ContextError, match="not found"):
        item.context.load()
    [empty] = read_items([{"id": "y", "query": "q", "context_glob": str(tmp_path / "*.none")}])
    with pytest.raises(ContextError, match="matches no files"):
        empty.context.load()


def test_a_context_past_the_cli_folder_cap_still_loads_for_a_batch_item(tmp_path):
    big = tmp_path / "corpus.txt"
    big.write_text("x" * 60_000_000)  # past `rlm ask`'s 50 MB folder cap
    (item,) = read_items([{"id": "a", "query": "q", "context_path": str(big)}])
    assert len(item.context.load()) == 60_000_000


def test_ray_workers_get_only_the_keys_of_the_providers_in_use(monkeypatch):
    from rlm.batch.ray_runner import forwarded_environment
    from rlm.batch.runner import ItemPlan

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-123456")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-anthropic-123456")
    monkeypatch.setenv("E2B_API_KEY", "e2b-123456789")
    plan = ItemPlan(rlm_settings={"model": "openai/gpt-4o-mini", "sandbox": "restricted"})
    assert sorted(k for k in forwarded_environment(plan) if k.endswith("_API_KEY")) == ["OPENAI_API_KEY"]
    with_e2b = ItemPlan(rlm_settings={"model": "claude-sonnet-4", "sandbox": "auto"})
    assert sorted(k for k in forwarded_environment(with_e2b) if k.endswith("_API_KEY")) == [
        "ANTHROPIC_API_KEY",
        "E2B_API_KEY",
    ]


def test_ray_workers_never_get_an_e2b_key_only_dotenv_gave_unless_e2b_is_named(monkeypatch, tmp_path):
    # A worker cannot tell where a key came from, and `auto` would pick E2B with it (review, round 22).
    from rlm.batch.ray_runner import forwarded_environment
    from rlm.batch.runner import ItemPlan
    from rlm.dotenv_keys import load_dotenv_file

    # The .env's key lands in os.environ: setenv first, so the test's end restores what was there.
    monkeypatch.setenv("E2B_API_KEY", "")
    monkeypatch.delenv("E2B_API_KEY")
    monkeypatch.setattr("rlm.dotenv_keys._loaded", {})  # this process's record, restored after
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("E2B_API_KEY=e2b-planted-123456\n")
    assert load_dotenv_file() == ["E2B_API_KEY"]
    for model in ("claude-sonnet-4", "some-provider/unknown-model"):  # a provider we know, and one we don't
        auto = ItemPlan(rlm_settings={"model": model, "sandbox": "auto"})
        assert "E2B_API_KEY" not in forwarded_environment(auto)
    named = ItemPlan(rlm_settings={"model": "claude-sonnet-4", "sandbox": "e2b"})
    assert forwarded_environment(named)["E2B_API_KEY"] == "e2b-planted-123456"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"id": "a", "query": "q\xff", "context": "c"}\n', "line 2 is not UTF-8"),
        (b'{"id": 1' + b"0" * 5000 + b', "query": "q", "context": "c"}\n', "line 2 cannot be read (ValueError"),
        (b'{"id": "a", "query": "q", "context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "RecursionError"),
    ],
)
def test_an_items_line_json_cannot_read_is_a_configuration_error_naming_it(tmp_path, line, says):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b'{"id": "ok", "query": "q", "context": "c"}\n' + line)
    with pytest.raises(ConfigurationError, match=r"items\.jsonl:") as caught:
        read_items(items)
    assert says in str(caught.value)


def test_an_items_file_may_start_with_a_bom(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_bytes(b'\xef\xbb\xbf{"id": "a", "query": "q", "context": "c"}\r\n')
    assert [item.id for item in read_items(items)] == ["a"]


def test_an_inline_context_json_cannot_write_gets_a_key_of_its_own(tmp_path):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    one, two, same = read_items(
        [
            {"id": "bytes", "query": "q", "context": [b"\x00\x01"]},
            {"id": "deep", "query": "q", "context": deep},
            {"id": "text", "query": "q", "context": ["a"]},
        ]
    )
    keys = {one.context.key, two.context.key, same.context.key}
    assert len(keys) == 3 and one.context.key.startswith("inline-object:")
    assert same.context.key == read_items([{"id": "x", "query": "q", "context": ["a"]}])[0].context.key


def test_a_context_glob_is_read_as_a_folder_is_no_symlink_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("key = abc123")
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("alpha")
    (corpus / "sub" / "b.txt").write_text("beta")
    (corpus / "sub" / "c.md").write_text("not matched")
    (corpus / "evil.txt").symlink_to(secret)
    (corpus / "loop").symlink_to(".")  # glob.glob walked this forever
    (corpus / ".hidden.txt").write_text("hidden")
    [top, deep, one] = read_items(
        [
            {"id": "top", "query": "q", "context_glob": str(corpus / "*.txt")},
            {"id": "deep", "query": "q", "context_glob": str(corpus / "**" / "*.txt")},
            {"id": "one", "query": "q", "context_glob": str(corpus / "s?b" / "[a-b].txt")},
        ]
    )
    assert top.context.load() == {"a.txt": "alpha"}
    assert deep.context.load() == {"a.txt": "alpha", "sub/b.txt": "beta"}
    assert one.context.load() == {"b.txt": "beta"}
    [only_link] = read_items([{"id": "l", "query": "q", "context_glob": str(corpus / "evil.*")}])
    with pytest.raises(ContextError, match="matches no files"):
        only_link.context.load()


def test_the_glob_matcher_takes_a_folder_thousands_deep():
    from rlm.batch.items import _glob_matches

    names = ("d",) * 5000 + ("x.py",)
    assert _glob_matches(("**", "*.py"), names)
    assert _glob_matches(("d", "**", "d", "x.py"), names)
    assert not _glob_matches(("*", "*.py"), names)
