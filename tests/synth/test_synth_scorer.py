"""Reward-model endpoints: a sequence-classification scorer and a token-classification step scorer,
loaded offline from a local directory through the backend loader."""

from __future__ import annotations

import pytest

from synth.backends.loader import backend_load
from synth.models import ModelEndpoint


def _classifier(tmp_path, tiny_model_dir, auto: str, num_labels: int):
    import torch
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir, num_labels=num_labels)
    torch.manual_seed(0)
    model = getattr(transformers, auto).from_config(config)
    out = tmp_path / auto
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture
def scorer_dir(tmp_path, tiny_model_dir):
    return _classifier(tmp_path, tiny_model_dir, "AutoModelForSequenceClassification", 1)


def test_scorer_kinds_exist():
    assert ModelEndpoint.Kind.SCORER == "scorer"
    assert ModelEndpoint.Kind.STEP_SCORER == "step_scorer"


def test_score_responses_batched_equals_one_by_one(scorer_dir, fresh_backends):
    backend = backend_load(kind="scorer", path=str(scorer_dir))
    conversations = [[{"role": "user", "content": "What is the capital of France?"}]] * 3
    responses = ["Paris.", "The capital of France is Paris, a city on the Seine.", "Blue light."]
    together = backend.score_responses(conversations, responses)
    alone = [backend.score_responses([c], [r])[0] for c, r in zip(conversations, responses, strict=True)]
    assert len(together) == 3 and all(isinstance(v, float) for v in together)
    assert together == pytest.approx(alone, abs=1e-4)
    # Different responses get different rewards (the head reads the response, not only the prompt).
    assert len({round(v, 5) for v in together}) == 3
    assert backend.score_responses([], []) == []
    with pytest.raises(TypeError):
        backend.generate(conversations, None)


def test_step_scorer_one_probability_per_step(tmp_path, tiny_model_dir, fresh_backends):
    path = _classifier(tmp_path, tiny_model_dir, "AutoModelForTokenClassification", 2)
    backend = backend_load(kind="step_scorer", path=str(path))
    conversations = [[{"role": "user", "content": "2 + 3 * 4?"}]] * 2
    scores = backend.score_steps(conversations, [["3 * 4 = 12", "2 + 12 = 14"], ["2 + 3 = 5", "5 * 4 = 20", "x"]])
    assert [len(s) for s in scores] == [2, 3]
    assert all(0.0 <= p <= 1.0 for s in scores for p in s)
    # A step's score depends only on what comes before it (causal model): the shared first tokens agree.
    again = backend.score_steps(conversations[:1], [["3 * 4 = 12"]])
    assert again[0][0] == pytest.approx(scores[0][0], abs=1e-4)


def test_step_scorer_reads_a_trained_prm_where_it_was_trained(tmp_path, tiny_model_dir, fresh_backends):
    """At the last token of the separator the PRM's config names, in the order of its id2label, after the
    prompt through the chat template: the positions of prefdata.tokens.steps_tokenize, which training uses."""
    import torch
    from transformers import AutoConfig

    from prefdata.tokens import steps_tokenize

    path = _classifier(tmp_path, tiny_model_dir, "AutoModelForTokenClassification", 2)
    config = AutoConfig.from_pretrained(path)
    config.step_separator, config.id2label, config.label2id = " ки\n", {0: "right", 1: "wrong"}, {"right": 0,
                                                                                                 "wrong": 1}
    config.save_pretrained(path)
    backend = backend_load(kind="step_scorer", path=str(path))
    assert backend.separator == " ки\n" and backend.right == 0
    conversation = [{"role": "user", "content": "2 + 3 * 4?"}]
    steps = ["3 * 4 = 12", "2 + 12 = 14"]
    ids, positions = steps_tokenize(backend.tokenizer, conversation, steps, separator=" ки\n", max_length=4096)

    def forward(rows):  # logits that say where they were read: P(right) = sigmoid(position / 100)
        assert rows == [ids]
        logits = torch.zeros(len(ids), 2)
        logits[:, 0] = torch.arange(len(ids)) / 100
        return [logits]

    backend._forward = forward
    scores = backend.score_steps([conversation], [steps])[0]
    assert scores == pytest.approx([float(torch.sigmoid(torch.tensor(p / 100))) for p in positions])
