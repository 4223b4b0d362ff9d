"""The suite-wide guard of conftest.py catches deprecation warnings that babyllama's code causes,
whether raised in our files or inside a library we call, and ignores the tests' own library calls."""

import warnings

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from babyllama.evaluation import logprob_engine, zero_shot
from conftest import PACKAGE_DIR, deprecations_from_babyllama


def _tiny_llama():
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    return LlamaForCausalLM(config).eval()


def test_a_warning_raised_in_our_files_is_caught():
    code = compile("import warnings\nwarnings.warn('old API', FutureWarning)\n", PACKAGE_DIR + "fake_module.py", "exec")
    with warnings.catch_warnings(record=True) as passed_on:
        with deprecations_from_babyllama() as caught:
            exec(code, {})
            warnings.warn("from the test itself", DeprecationWarning)
    assert len(caught) == 1 and "fake_module.py:2: FutureWarning: old API" in caught[0]
    assert [str(w.message) for w in passed_on] == ["from the test itself"]  # not ours: passed on


def test_a_deprecated_keyword_passed_through_our_code_is_caught():
    """transformers points this warning's filename into torch; the stack shows our call."""
    model, ids = _tiny_llama(), torch.zeros(1, 3, dtype=torch.long)
    keep = torch.ones(1, 3, dtype=torch.bool)
    with warnings.catch_warnings(record=True) as passed_on:
        with deprecations_from_babyllama() as caught, torch.inference_mode():
            model(input_ids=ids, past_key_values=None)  # the test's own call: not ours
            assert caught == []
            logprob_engine._kept_logits(model, keep, True, input_ids=ids, past_key_values=None)
    assert len(caught) == 1 and "`past_key_values` is deprecated" in caught[0]
    assert [w.category for w in passed_on] == [FutureWarning]  # the test's own call, passed on


def test_the_zero_shot_scorer_uses_the_current_cache_keyword():
    model = _tiny_llama()
    assert logprob_engine.cache_keyword(model) == "cache"
    items = [zero_shot.EncodedItem(choices=((1, 5, 6, 7), (1, 5, 8, 9, 3)), context_len=2)]
    with deprecations_from_babyllama() as caught:
        zero_shot.score_encoded(model, items, progress=False)
    assert caught == []
