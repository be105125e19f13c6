"""T5 prompt tokenization with the `tokenizers` library, padded and truncated as the original Tango does.

The original calls transformers' T5TokenizerFast with padding=True (to the longest prompt) and truncation at
model_max_length (512) for prompts, and padding="max_length" to that same length for the unconditional "" batch.
This reads the same tokenizer.json, so the ids are identical without importing transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .errors import CheckpointError
from .specs import T5_MAX_LENGTH

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


class PromptTokenizer:
    """Turns prompts into (input_ids, attention_mask) int64 arrays, right-padded with the pad token."""

    def __init__(self, tokenizer_file: str | Path, max_length: int = T5_MAX_LENGTH, pad_token: str = "<pad>"):
        path = Path(tokenizer_file)
        if not path.is_file():
            raise CheckpointError(f"tokenizer file not found: {path} (a T5 tokenizer.json is needed)")
        self._tokenizer = Tokenizer.from_file(str(path))
        self.max_length = max_length
        pad_id = self._tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise CheckpointError(f"{path}: pad token {pad_token!r} is not in the vocabulary")
        self.pad_id = pad_id

    @classmethod
    def from_folder(cls, folder: str | Path) -> PromptTokenizer:
        """Load tokenizer.json with the max length and pad token of tokenizer_config.json / special_tokens_map."""
        folder = Path(folder)
        config = _read_json(folder / "tokenizer_config.json")
        specials = _read_json(folder / "special_tokens_map.json")
        max_length = config.get("model_max_length", T5_MAX_LENGTH)
        if not isinstance(max_length, int) or max_length > 100_000:  # transformers' "no limit" sentinel
            max_length = T5_MAX_LENGTH
        pad = specials.get("pad_token", config.get("pad_token", "<pad>"))
        pad = pad.get("content", "<pad>") if isinstance(pad, dict) else pad
        return cls(folder / "tokenizer.json", max_length=max_length, pad_token=pad)

    def __call__(
        self, prompts: Sequence[str], length: int | None = None, min_length: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize; pad to the longest prompt (at least `min_length`, for engines with a fixed text length), or
        truncate and pad to exactly `length` when given."""
        limit = self.max_length if length is None else length
        self._tokenizer.enable_truncation(max_length=limit)
        encodings = self._tokenizer.encode_batch(list(prompts))
        width = length if length is not None else max(min_length, *(len(e.ids) for e in encodings))
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask
