"""Collate dataset items into batches: stack uint8 clips, tokenize texts as the original."""

from __future__ import annotations

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from clipbert.data.batches import PairBatch, QABatch, VideoBatch, batch_frames
from clipbert.data.text import TextTokenizer


class TokenMasker:
    """BERT's masking, as the original's ``mask_batch_text_tokens``: each token is chosen with
    ``probability``; of the chosen, 80% become [MASK], 10% a random id of the vocabulary, 10%
    stay. Never [CLS], [SEP] or padding; other special tokens ([UNK]) may be chosen, as there.
    Labels are the chosen tokens' ids and -100 elsewhere. The draws come from torch's global
    generator in the original's order, so a seed gives the original's masks (transformers'
    ``torch_mask_tokens`` draws them so).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, probability: float) -> None:
        if not 0.0 < probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {probability}")
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability)
        self.never = torch.tensor(
            [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
        )

    def __call__(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(texts, L) ids -> masked ids (a copy) and labels."""
        special = torch.isin(input_ids, self.never)
        return self.collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special)


def frames_and_texts(items: list[dict], tokenize: TextTokenizer) -> dict[str, torch.Tensor]:
    """The fields every text-video batch has: uint8 frames, the tokenized ``texts`` of all
    items, and each text's video."""
    input_ids, attention_mask = tokenize([text for item in items for text in item["texts"]])
    counts = torch.tensor([len(item["texts"]) for item in items])
    return {
        "frames": batch_frames([item["frames"] for item in items]),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "visual_index": torch.arange(len(items)).repeat_interleave(counts),
        "replaced": sum(item.get("replaced", 0) for item in items),
        "frame_times": [item.get("frame_times", []) for item in items],
    }


class QACollator:
    """Turns a list of :class:`~clipbert.data.datasets.QADataset` items into a batch.

    With ``num_labels`` (image QA) it also scatters each question's soft answer scores into a
    dense (Q, num_labels) target, as the original's VQA loader does.
    """

    def __init__(self, tokenize: TextTokenizer, num_labels: int | None = None) -> None:
        self.tokenize = tokenize
        self.num_labels = num_labels

    def _target_scores(self, per_question: list[dict[int, float]]) -> torch.Tensor:
        target = torch.zeros(len(per_question), self.num_labels)
        for row, scores in enumerate(per_question):
            for label, score in scores.items():
                target[row, label] = score
        return target

    def __call__(self, items: list[dict]) -> QABatch:
        def gather(key: str) -> list:
            return [value for item in items for value in item[key]]

        questions = gather("questions")
        return QABatch(
            **frames_and_texts(items, self.tokenize),
            labels=torch.tensor(gather("labels"), dtype=torch.long),
            texts_per_question=len(gather("texts")) // len(questions),
            question_ids=gather("question_ids"),
            questions=questions,
            answers=gather("answers"),
            answer_types=gather("answer_types"),
            options=gather("options"),
            broken=gather("broken"),
            video_ids=[item["video_id"] for item in items],
            target_scores=None
            if self.num_labels is None
            else self._target_scores(gather("answer_scores")),
        )


class PairCollator:
    """Batches :class:`~clipbert.data.datasets.ImageTextMatchingDataset` items.

    With ``mlm_probability`` > 0 it also masks a copy of the matching texts as the original's
    pre-training collator does (:class:`TokenMasker`), for the task's auxiliary MLM loss.
    """

    def __init__(self, tokenize: TextTokenizer, mlm_probability: float = 0.0) -> None:
        if not 0.0 <= mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in [0, 1), got {mlm_probability}")
        self.tokenize = tokenize
        self.masker = TokenMasker(tokenize.tokenizer, mlm_probability) if mlm_probability else None

    def __call__(self, items: list[dict]) -> PairBatch:
        common = frames_and_texts(items, self.tokenize)
        labels = torch.tensor([label for item in items for label in item["labels"]])
        batch = PairBatch(**common, labels=labels, video_ids=[item["video_id"] for item in items])
        if self.masker is not None:
            batch.mlm_input_ids, batch.mlm_labels = self.masker(batch.input_ids[labels == 1])
        return batch


def collate_videos(items: list[dict]) -> VideoBatch:
    """Batches :class:`~clipbert.data.datasets.VideoListDataset` items."""
    return VideoBatch(
        frames=batch_frames([item["frames"] for item in items]),
        indices=torch.tensor([item["index"] for item in items]),
        video_ids=[item["video_id"] for item in items],
        broken=[item["broken"] for item in items],
        frame_times=[item["frame_times"] for item in items],
    )
