"""Text conditioning: tokenizer plus frozen pretrained embeddings or encoder."""

from .encoder import (
    DEFAULT_TEXT_MODEL,
    Conditioning,
    TextConfig,
    TextEncoder,
    resolve_text_model,
)

__all__ = ["DEFAULT_TEXT_MODEL", "Conditioning", "TextConfig", "TextEncoder", "resolve_text_model"]
