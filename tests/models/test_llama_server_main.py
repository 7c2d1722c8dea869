"""The bundled server's RAM prompt cache counts every byte a saved state holds (models/llama_server_main.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("llama_cpp.llama_cache")  # the [local] extra

from rlm.models.llama_server_main import bounded_cache_class, logits_kept, state_bytes  # noqa: E402


def state(kv_bytes: int, logits_rows: int = 4, vocab: int = 1000) -> SimpleNamespace:
    return SimpleNamespace(
        llama_state_size=kv_bytes,
        scores=np.zeros((logits_rows, vocab), dtype=np.float32),
        input_ids=np.zeros(100, dtype=np.intc),
    )


def test_a_state_counts_its_logits_and_tokens_not_only_the_llama_state():
    assert state_bytes(state(kv_bytes=1_000)) == 1_000 + 4 * 1000 * 4 + 100 * 4


def test_the_cache_evicts_by_what_its_states_really_hold():
    cache = bounded_cache_class()(capacity_bytes=55_000)
    for i in range(5):  # 1 kB of llama state each, but 16 kB of logits: the stock cache keeps all five
        cache[(i,)] = state(kv_bytes=1_000)
    assert cache.cache_size <= 55_000
    assert list(cache.cache_state) == [(2,), (3,), (4,)]  # least recently used went first


def test_without_logits_a_state_keeps_its_logits_shape_but_not_their_memory():
    cache = bounded_cache_class(keep_logits=False)(capacity_bytes=55_000)
    for i in range(5):  # 1 kB of llama state, 16 kB of logits never written: all five fit now
        cache[(i,)] = state(kv_bytes=1_000)
    assert len(cache.cache_state) == 5 and cache.cache_size == 5 * (1_000 + 1000 * 4 + 100 * 4)
    restored = cache[(4,)].scores.copy()  # what Llama.load_state does with it
    assert restored.shape == (4, 1000) and not restored.any()


@pytest.mark.parametrize(
    ("argv", "kept"),
    [([], True), (["--logits_all", "true"], True), (["--logits_all", "false", "--n_ctx", "8"], False)],
)
def test_the_server_s_arguments_say_whether_logits_are_kept(argv, kept):
    assert logits_kept(argv) is kept
