"""Shared fixtures: a tiny random Llama-style model with a real tokenizer and chat template."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<pad>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Which response is better? Answer with one letter, A or B.",
    "Compare two responses to the conversation below and decide which one is better.",
    "Give me three tips for sleeping better: keep a schedule, avoid screens, keep the room cool.",
    "The sky looks blue because air scatters blue light more than red light.",
    "Response A Response B Conversation User Assistant helpful correct harmless",
] * 20


def build_tiny_model(path: Path) -> Path:
    """A 2-layer, 64-wide Llama with a 512-token byte-level BPE tokenizer: seconds, no network."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|end|>",
                                        bos_token=None, unk_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def media(settings, tmp_path):
    """Snapshots and models of this test go to its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODELS_ROOT = tmp_path / "models"
    return tmp_path


@pytest.fixture
def tiny_endpoint(db, tiny_model_dir):
    from synth.models import ModelEndpoint

    return ModelEndpoint.objects.create(name="tiny", kind=ModelEndpoint.Kind.TRANSFORMERS, path=str(tiny_model_dir))


@pytest.fixture
def fresh_backends():
    """No backend (and so no learnt server capability) carried over from another test, nor left to the next."""
    from synth.backends.loader import backend_cache_clear

    backend_cache_clear()
    yield
    backend_cache_clear()
