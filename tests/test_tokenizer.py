"""Tokenization with `tokenizers` against the original's token ids (golden) and transformers' T5 tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURE
from tango_rt.runtime.errors import CheckpointError
from tango_rt.runtime.tokenizer import PromptTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> PromptTokenizer:
    return PromptTokenizer.from_folder(FIXTURE / "flan-t5-tiny")


def test_prompts_match_golden(tokenizer, golden, golden_meta):
    ids, mask = tokenizer(golden_meta["prompts"])
    np.testing.assert_array_equal(ids, golden["tok_cond_input_ids"])
    np.testing.assert_array_equal(mask, golden["tok_cond_attention_mask"])
    assert ids.dtype == mask.dtype == np.int64


def test_unconditional_padded_to_prompt_length(tokenizer, golden):
    ids, mask = tokenizer([""] * 3, length=golden["tok_cond_input_ids"].shape[1])
    np.testing.assert_array_equal(ids, golden["tok_uncond_input_ids"])
    np.testing.assert_array_equal(mask, golden["tok_uncond_attention_mask"])


def test_truncation_and_odd_text_match_transformers(tokenizer):
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(FIXTURE / "flan-t5-tiny"))
    prompts = ["water " * 700, "a dog", "ünïcödé  weird\tspaces \n x", ""]
    expected = reference(prompts, max_length=512, padding=True, truncation=True, return_tensors="np")
    ids, mask = tokenizer(prompts)
    assert ids.shape == (4, 512)  # truncated at model_max_length, </s> kept last
    np.testing.assert_array_equal(ids, expected["input_ids"])
    np.testing.assert_array_equal(mask, expected["attention_mask"])


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer file not found"):
        PromptTokenizer.from_folder(tmp_path)
