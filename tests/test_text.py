"""Text conditioning from local Hugging Face directories (MiniLM-L6 and a tiny CLIP)."""

import pytest
import torch
from tiny_clip import make_tiny_clip

from bcosdiff.errors import ModelLoadError
from bcosdiff.text import TextConfig, TextEncoder, resolve_text_model


@pytest.fixture(scope="module")
def minilm_subword():
    return TextEncoder(TextConfig(mode="subword", max_length=16))


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_subword_mode_masks_specials_and_adds_positions(minilm_subword):
    cond = minilm_subword(["a red circle", "two big purple squares on the left"])
    assert cond.embeddings.shape[0] == 2 and cond.embeddings.shape[2] == minilm_subword.dim == 384
    assert [t for _, t in cond.prompt_tokens(0)] == ["a", "red", "circle"]
    assert cond.tokens[0][0] == "[CLS]" and "[SEP]" in cond.tokens[0]
    assert torch.equal(cond.mask, ~cond.special)
    assert not cond.mask[0, 0] and cond.mask[0, 1:4].all() and not cond.mask[0, 4:].any()
    # Embedding = subword table row + position table row (no contextual mixing).
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(resolve_text_model("minilm-l6"), use_safetensors=True)
    ids = cond.token_ids[1]
    expected = (
        bert.embeddings.word_embeddings.weight[ids]
        + bert.embeddings.position_embeddings.weight[: len(ids)]
    )
    torch.testing.assert_close(cond.embeddings[1], expected)
    # A token's embedding does not depend on its neighbours.
    other = minilm_subword(["a blue circle"])
    torch.testing.assert_close(other.embeddings[0, 3], cond.embeddings[0, 3])


def test_truncation_is_reported(minilm_subword):
    cond = minilm_subword(["red " * 40])
    assert cond.truncated == [True]
    assert cond.embeddings.shape[1] == 16


def test_encoder_mode_uses_penultimate_layer_and_masks_nothing():
    encoder = TextEncoder(TextConfig(mode="encoder", max_length=12))
    cond = encoder(["a red circle"])
    assert cond.embeddings.shape == (1, 12, 384)
    assert cond.mask.all() and cond.special[0, 0] and cond.special[0, -1]
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(resolve_text_model("minilm-l6"), use_safetensors=True)
    attention = (~cond.special | (torch.arange(12) < 5)).long()  # CLS..SEP attended, pads not
    hidden = bert(cond.token_ids, attention_mask=attention, output_hidden_states=True).hidden_states
    # The same numbers as the whole model's penultimate layer (the encoder drops the last
    # layer, which the conditioning never reads).
    torch.testing.assert_close(cond.embeddings, hidden[-2], rtol=0, atol=0)
    assert not torch.allclose(cond.embeddings, hidden[-1])
    assert len(encoder.text_model.encoder.layer) == len(bert.encoder.layer) - 1


def test_clip_directory_loads_through_the_same_path(tiny_clip_dir):
    from transformers import CLIPTextModel

    encoder = TextEncoder(TextConfig(model=str(tiny_clip_dir), mode="encoder", max_length=12))
    cond = encoder(["a red"])
    assert cond.embeddings.shape == (1, 12, 32) and cond.mask.all()
    assert cond.tokens[0][0] == "<|startoftext|>" and cond.tokens[0][-1] == "<|endoftext|>"
    clip = CLIPTextModel.from_pretrained(tiny_clip_dir, use_safetensors=True)
    out = clip(cond.token_ids, output_hidden_states=True)
    tower = getattr(clip, "text_model", clip)  # transformers 5 flattened the text tower
    expected = tower.final_layer_norm(out.hidden_states[-2])
    torch.testing.assert_close(cond.embeddings, expected, rtol=0, atol=0)

    subword = TextEncoder(TextConfig(model=str(tiny_clip_dir), mode="subword", max_length=12))
    sub = subword(["a red"])
    emb = tower.embeddings
    ids = sub.token_ids[0]
    torch.testing.assert_close(
        sub.embeddings[0],
        emb.token_embedding.weight[ids] + emb.position_embedding.weight[: len(ids)],
    )
    assert [t for _, t in sub.prompt_tokens()] == ["a</w>", "r", "e", "d</w>"]


def test_missing_or_broken_text_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        TextEncoder(TextConfig(model=str(tmp_path / "nope")))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError):
        TextEncoder(TextConfig(model=str(tmp_path)))
    with pytest.raises(ValueError, match="mode"):
        TextConfig(mode="clip")
