"""ClipBERT's shared body: frames and texts in, one pooled [CLS] vector per (text, clip) out."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from transformers import BertConfig, BertModel
from transformers.masking_utils import create_bidirectional_mask

from clipbert.data.batches import Frames
from clipbert.models.checkpoints import load_bert_weights, load_grid_feat
from clipbert.models.cpu_linear import CpuLinear, route_cpu_linears
from clipbert.models.frame_input import FrameInput, leading_shape
from clipbert.models.resnet import ResNet
from clipbert.models.visual import GridEncoder, VisualEmbeddings

log = logging.getLogger(__name__)

PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (1.0, 1.0, 1.0)


class ClipBertBackbone(nn.Module):
    """Frames -> input transform -> CNN -> grid encoder -> visual embeddings, then one BERT
    over ``[text ; visual]``.

    The model takes the loaders' uint8 frames at their own size: its :class:`FrameInput`
    resizes, pads and normalises them on its device (``image_size``, ``pixel_mean``,
    ``pixel_std``). Differences from the original's control flow that do not change numbers:
    all clips go through the CNN as one batch and through BERT as one batch of sequences (the
    original runs one full forward per clip), and the CNN runs once per video however many
    texts share it. Everything after the CNN is computed per (text, clip) pair, so dropout
    draws independent masks per pair exactly as the original's per-clip forwards do. In eval
    mode the CNN takes at most ``eval_frames_per_pass`` frames at a time (transforming them
    just before) and BERT at most ``eval_pairs_per_pass`` (text, clip) pairs, so inference
    memory grows little with the number of clips; in train mode each is one pass.
    """

    def __init__(
        self,
        cnn: ResNet,
        bert: BertModel,
        *,
        image_size: int | None,
        random_token_sampling: int = 0,
        max_grid_size: int = 100,
        pixel_mean: Sequence[float] = PIXEL_MEAN_RGB,
        pixel_std: Sequence[float] = PIXEL_STD_RGB,
        eval_frames_per_pass: int = 8,
        eval_pairs_per_pass: int = 128,
        compile: bool = False,
        bert_source: str | None = None,
        cpu_linear: CpuLinear = "auto",
    ) -> None:
        super().__init__()
        if eval_pairs_per_pass < 1:
            raise ValueError(f"eval_pairs_per_pass must be >= 1, got {eval_pairs_per_pass}")
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be true or false, got {compile!r}")
        if bert.pooler is None:
            raise ValueError("ClipBERT pools the text [CLS]: build BertModel with its pooler")
        config = bert.config
        self.frame_input = FrameInput(image_size, pixel_mean, pixel_std, eval_frames_per_pass)
        self.cnn = cnn
        self.grid_encoder = GridEncoder(cnn.out_channels, config.hidden_size)
        self.visual_embeddings = VisualEmbeddings(
            config.hidden_size,
            max_grid_rows=max_grid_size,
            max_grid_cols=max_grid_size,
            layer_norm_eps=config.layer_norm_eps,
            dropout=config.hidden_dropout_prob,
            random_token_sampling=random_token_sampling,
        )
        self.bert = bert
        # The original gives the visual embeddings BERT init and the grid encoder PyTorch's.
        self.visual_embeddings.apply(lambda m: _bert_init(m, config.initializer_range))
        self.eval_pairs_per_pass = eval_pairs_per_pass
        # the BERT folder (or file) the weights came from: pre-training heads load from it too
        self.bert_source = bert_source
        route_cpu_linears(self, cpu_linear)
        if compile:
            self.compile_parts()

    def compile_parts(self) -> None:
        """``torch.compile`` the CNN, the grid encoder and BERT's encoder in place: their
        elementwise work (folded norms, ReLUs, residual adds, dropout, GELU, LayerNorm) fuses
        into fewer passes over memory. In place, so parameter names and checkpoints stay as
        they are; the glue between the parts (pairing, chunking, pooling) stays eager."""
        for part in (self.cnn, self.grid_encoder, self.bert.encoder):
            part.compile()

    @property
    def hidden_size(self) -> int:
        return self.bert.config.hidden_size

    @property
    def image_size(self) -> int | None:
        return self.frame_input.image_size

    def encode_frames(self, frames: Frames) -> Tensor:
        """Frames (..., 3, H, W) as the loaders ship them -> grids (..., h, w, H)."""
        lead = leading_shape(frames)
        grid = torch.cat([self._cnn_grid(x) for x in self.frame_input.chunks(frames)])
        return grid.permute(0, 2, 3, 1).reshape(*lead, *grid.shape[2:], grid.shape[1])

    def _cnn_grid(self, x: Tensor) -> Tensor:
        """The CNN's input (F, 3, S, S) -> grid (F, H, h, w)."""
        features = self.cnn(x.to(self.cnn.input_dtype))
        if features.is_cpu:
            # With channels-last input, oneDNN reorders the grid encoder's kernel (the largest
            # in the model, 14 M weights) in each pass; a planar copy of the small feature map
            # costs less: 3% of an fp32 CPU training step, neutral in bf16 (benchmarks/RESULTS.md).
            features = features.contiguous()
        return self.grid_encoder(features)

    def encode(
        self,
        frames: Frames,
        input_ids: Tensor,
        attention_mask: Tensor,
        visual_index: Tensor | None = None,
    ) -> Tensor:
        """Sequence output (E, N, L + visual tokens, H): text tokens first, then visual tokens.

        frames (V, N, T, 3, H, W): V videos, N clips, T frames per clip, as the loaders ship
        them (:data:`Frames`). input_ids and attention_mask (E, L). visual_index (E,) gives
        each text's video; None pairs text i with video i. Each text is paired with each of its
        video's N clips.
        """
        return self.encode_grid(self.encode_frames(frames), input_ids, attention_mask, visual_index)

    def encode_grid(
        self,
        grid: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        visual_index: Tensor | None = None,
    ) -> Tensor:
        """``encode`` from the CNN grids (V, N, T, h, w, H) of ``encode_frames``, so that a
        training step can pair one CNN pass with several sets of texts."""
        num_clips = grid.shape[1]
        num_texts = input_ids.shape[0]
        visual_index = _pair_index(visual_index, num_texts, grid)
        pair_grid = grid[visual_index].flatten(0, 1)  # (E*N, T, h, w, H), text-major
        hidden = self.joint(
            self.visual_embeddings(pair_grid),
            input_ids.repeat_interleave(num_clips, dim=0),
            attention_mask.repeat_interleave(num_clips, dim=0),
        )
        return hidden.unflatten(0, (num_texts, num_clips))

    def pool(self, hidden: Tensor) -> Tensor:
        """Pooled text [CLS] (..., H) of sequence outputs (..., L + tokens, H)."""
        return self.bert.pooler(hidden.flatten(0, -3)).unflatten(0, hidden.shape[:-2])

    def video_tokens(self, frames: Frames) -> Tensor:
        """Visual tokens (V, N, tokens, H) of each clip, to pair with many texts in evaluation.

        Equal to what ``encode`` computes per pair in eval mode, where the visual embeddings
        draw no dropout or token sampling; training keeps per-pair draws through ``encode``.
        """
        grid = self.encode_frames(frames)  # (V, N, T, h, w, H)
        return self.visual_embeddings(grid.flatten(0, 1)).unflatten(0, grid.shape[:2])

    def joint(self, visual: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """BERT over ``[text ; visual]`` for P pairs: visual (P, tokens, H), ids and mask (P, L)
        -> hidden (P, L + tokens, H). Visual tokens are never masked."""
        text = self.bert.embeddings(input_ids=input_ids)
        embeddings = torch.cat([text, visual], dim=1)
        mask = torch.cat([attention_mask, attention_mask.new_ones(visual.shape[:2])], dim=1)
        mask = create_bidirectional_mask(
            config=self.bert.config, inputs_embeds=embeddings, attention_mask=mask
        )
        return self.bert.encoder(embeddings, attention_mask=mask).last_hidden_state

    def forward(
        self,
        frames: Frames,
        input_ids: Tensor,
        attention_mask: Tensor,
        visual_index: Tensor | None = None,
    ) -> Tensor:
        """Pooled text [CLS] (E, N, H) per (text, clip); see ``encode`` for the inputs.

        In eval mode BERT takes at most ``eval_pairs_per_pass`` (text, clip) pairs at a time
        after the one CNN pass, so its activations do not grow with texts x clips.
        """
        if self.training:
            return self.pool(self.encode(frames, input_ids, attention_mask, visual_index))
        grid = self.encode_frames(frames)
        visual_index = _pair_index(visual_index, input_ids.shape[0], grid)
        step = max(1, self.eval_pairs_per_pass // grid.shape[1])  # texts per pass
        pooled = []
        for start in range(0, input_ids.shape[0], step):
            texts = slice(start, start + step)
            hidden = self.encode_grid(
                grid, input_ids[texts], attention_mask[texts], visual_index[texts]
            )
            pooled.append(self.pool(hidden))
        return torch.cat(pooled)


def _pair_index(visual_index: Tensor | None, num_texts: int, grid: Tensor) -> Tensor:
    """Each text's video; None pairs text i with video i."""
    if visual_index is not None:
        return visual_index
    if num_texts != grid.shape[0]:
        raise ValueError(f"{num_texts} texts but {grid.shape[0]} videos: pass visual_index")
    return torch.arange(num_texts, device=grid.device)


def _bert_init(module: nn.Module, std: float) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_bert(
    config: Mapping[str, Any] | None = None,
    pretrained_dir: str | None = None,
    vocab_size: int | None = None,
    attn_implementation: str = "sdpa",
) -> BertModel:
    """A BertModel (with pooler) from config values, weights from a local folder; never downloads.

    ``pretrained_dir`` is a bert-base-uncased folder (or a weights file): its ``config.json``,
    when present, replaces ``config``, and its weights load with a logged report. Without it the
    model gets BERT init (normal ``initializer_range``, zero bias, LayerNorm 1/0).
    ``vocab_size`` overrides the config's, for a tokenizer with added tokens.
    """
    folder_config = Path(pretrained_dir) / "config.json" if pretrained_dir else None
    if folder_config is not None and folder_config.is_file():
        values = BertConfig.from_json_file(folder_config).to_dict()
        if vocab_size is not None and vocab_size != values["vocab_size"]:
            raise ValueError(
                f"vocab_size={vocab_size} but {folder_config} has {values['vocab_size']}"
            )
    elif config is not None:
        # Plain dicts all the way down: BertConfig validates its fields strictly (transformers 5
        # with huggingface_hub 1.x refuses an omegaconf id2label), and Hydra passes containers.
        values = {
            key: OmegaConf.to_container(value, resolve=True)
            if OmegaConf.is_config(value)
            else value
            for key, value in config.items()
        }
        if vocab_size is not None:
            values["vocab_size"] = vocab_size
    else:
        raise ValueError("give BERT config values, or a pretrained_dir that holds config.json")
    bert_config = BertConfig(**values)
    # transformers 5 takes the attention implementation on the config, not as a kwarg.
    bert_config._attn_implementation = attn_implementation
    bert = BertModel(bert_config)
    if pretrained_dir:
        load_bert_weights(bert, pretrained_dir).log(log, f"BERT {pretrained_dir}")
    return bert


def build_backbone(
    cnn: Mapping[str, Any],
    bert: Mapping[str, Any],
    image_size: int | None,
    vocab_size: int | None = None,
    cnn_weights: str | None = None,
    random_token_sampling: int = 0,
    pixel_mean: Sequence[float] = PIXEL_MEAN_RGB,
    pixel_std: Sequence[float] = PIXEL_STD_RGB,
    eval_frames_per_pass: int = 8,
    eval_pairs_per_pass: int = 128,
    compile: bool = False,
    cpu_linear: CpuLinear = "auto",
) -> ClipBertBackbone:
    """Hydra entry: ``cnn`` holds ResNet kwargs; ``bert`` holds BertConfig values plus
    ``pretrained_dir`` and ``attn_implementation``; ``cnn_weights`` is the grid-feat R50 ``.pth``.
    ``image_size`` and ``vocab_size`` come from the task's data (its ``image_size`` and
    tokenizer), as the run layer builds a task.

    Keeping the BERT values flat lets users write ``model.bert.num_hidden_layers=1``. A
    ``pretrained_dir`` with a config.json overrides the listed values.
    """
    bert_values = dict(bert)
    pretrained_dir = bert_values.pop("pretrained_dir", None)
    attn_implementation = bert_values.pop("attn_implementation", "sdpa")
    resnet = ResNet(**cnn)
    if cnn_weights:
        load_grid_feat(resnet, cnn_weights).log(log, f"CNN {cnn_weights}")
    return ClipBertBackbone(
        resnet,
        build_bert(
            config=bert_values,
            pretrained_dir=pretrained_dir,
            vocab_size=vocab_size,
            attn_implementation=attn_implementation,
        ),
        image_size=image_size,
        random_token_sampling=random_token_sampling,
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
        eval_frames_per_pass=eval_frames_per_pass,
        eval_pairs_per_pass=eval_pairs_per_pass,
        compile=compile,
        bert_source=pretrained_dir,
        cpu_linear=cpu_linear,
    )
