"""The text side, as the original: a local BERT WordPiece tokenizer, and each text tokenized as
one segment ``[CLS] text [SEP]`` padded to ``max_txt_len``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertTokenizerFast, PreTrainedTokenizerBase


def load_tokenizer(tokenizer_dir: str | Path) -> BertTokenizerFast:
    """Load a local BERT WordPiece tokenizer; never downloads."""
    path = Path(tokenizer_dir)
    if not (path / "vocab.txt").is_file() and not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"no tokenizer in {path}: expected vocab.txt or tokenizer.json "
            "(set model tokenizer_dir / task.datamodule.tokenizer_dir to a local folder)"
        )
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


class TextTokenizer:
    """Tokenize as the original: one segment ``[CLS] text [SEP]``, padded to ``max_txt_len``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_txt_len: int) -> None:
        if max_txt_len < 3:
            raise ValueError(f"max_txt_len must be >= 3 (got {max_txt_len})")
        self.tokenizer = tokenizer
        self.max_txt_len = max_txt_len

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_txt_len,
            return_tensors="pt",
        )
        return encoded["input_ids"], encoded["attention_mask"]
