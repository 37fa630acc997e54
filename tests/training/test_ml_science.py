"""The training methods learn, at small scale, on CPU: synthetic sets whose rule a small model can find.

- A reward model trained on sums (``3+4=`` chosen ``7``, rejected a wrong sum) ranks the right sum over wrong
  ones it never saw in training, in over 90% of held-out pairs.
- DPO on the same pairs raises the policy's chosen-over-rejected implicit reward margin (0 before training, the
  policy being its reference) on those held-out pairs.
- A process reward model trained on chains of sums (every step after the first wrong sum is labelled wrong)
  finds the first wrong step of held-out chains far more often than the best constant guess.

Each trains a Llama of two layers built here (a character tokenizer, nothing downloaded) by calling the
script's ``main``, as ``python -m training.ml.<method>`` does.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from prefdata.records import PreferenceRow, StepwiseRow
from prefdata.targets import snapshot_folder_write

pytestmark = pytest.mark.slow

DIGITS = range(5)  # sums of 0..4 + 0..4: one digit, and 9 wrong digits per prompt


def build_char_model(path: Path, *, hidden: int = 64, layers: int = 2) -> Path:
    """A small Llama whose tokenizer has one token per byte (no merges): digits, '+' and '=' stay apart."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<pad>", "<|end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(["0+1=1"], trainers.BpeTrainer(vocab_size=len(alphabet) + len(special),
                                                          special_tokens=special, initial_alphabet=alphabet))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|end|>",
                                        bos_token=None, unk_token=None)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def char_model(tmp_path_factory) -> Path:
    return build_char_model(tmp_path_factory.mktemp("char-llama"))


def sum_pairs(seed: int = 0) -> tuple[list[PreferenceRow], list[PreferenceRow]]:
    """Every prompt ``a+b=`` with the right sum chosen over each wrong digit; per prompt, 7 wrong answers
    go to training and 2 are held out, so a test pair's rejected answer is one never seen for its prompt."""
    rng = random.Random(seed)
    train, test = [], []
    for a in DIGITS:
        for b in DIGITS:
            wrong = [d for d in range(10) if d != a + b]
            rng.shuffle(wrong)
            rows = [PreferenceRow(f"{a}+{b}=", str(a + b), str(d)) for d in wrong]
            train += rows[:7]
            test += rows[7:]
    rng.shuffle(train)
    return train, test


def write(tmp_path: Path, kind: str, train: list, test: list) -> tuple[str, str]:
    folder = snapshot_folder_write(tmp_path / kind, {"train": train, "test": test}, kind=kind).folder
    return str(folder / "train.jsonl"), str(folder / "test.jsonl")


def common(tmp_path: Path, model: Path, train: str, test: str, **fields) -> dict:
    return {"dataset": train, "eval_dataset": test, "model": str(model), "output_dir": str(tmp_path / "out"),
            "max_length": 32, "use_cpu": True, "save_steps": 10_000, "seed": 0, **fields}


def test_a_reward_model_learns_which_sum_is_right(tmp_path, char_model):
    from training.ml.reward import RewardScriptConfig, main

    train, test = write(tmp_path, "preference", *sum_pairs())
    out = main(RewardScriptConfig(**common(tmp_path, char_model, train, test, max_steps=300, batch_size=16,
                                           learning_rate=2e-3, warmup_steps=20)))
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["rows"] == 50
    assert evaluation["accuracy"] > 0.9, evaluation
    assert evaluation["mean_margin"] > 0


def test_dpo_raises_the_implicit_margin_of_the_right_sum(tmp_path, char_model):
    from training.ml.dpo import DPOScriptConfig, main

    train, test = write(tmp_path, "preference", *sum_pairs())
    out = main(DPOScriptConfig(**common(tmp_path, char_model, train, test, max_steps=150, batch_size=16,
                                        learning_rate=1e-3, beta=0.1)))
    evaluation = json.loads((out / "evaluation.json").read_text())
    # before training the policy is its reference: every margin is 0 and no pair counts as ranked right
    assert evaluation["implicit_margin"] > 0.1, evaluation
    assert evaluation["implicit_reward_accuracy"] > 0.8, evaluation
    assert evaluation["chosen_logratio"] > evaluation["rejected_logratio"]


def sum_chains(count: int, seed: int) -> list[StepwiseRow]:
    """Chains of four sums ``a+b=c``; from a random step on (or none) a sum is wrong, and every step from the
    first wrong one is labelled wrong (the labels of PRM800K and Math-Shepherd after an error)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first_wrong = rng.choice([-1, 0, 1, 2, 3])
        steps, labels = [], []
        for i in range(4):
            a, b = rng.choice(DIGITS), rng.choice(DIGITS)
            c = a + b
            if i == first_wrong or (first_wrong != -1 and i > first_wrong and rng.random() < 0.5):
                c = rng.choice([d for d in range(10) if d != a + b])
            steps.append(f"{a}+{b}={c}")
            labels.append(first_wrong == -1 or i < first_wrong)
        rows.append(StepwiseRow("Check:", steps, labels))
    return rows


def test_a_process_reward_model_finds_the_first_wrong_step(tmp_path, char_model):
    from training.ml.evaluate import first_error
    from training.ml.prm import PRMScriptConfig, main

    train_rows, test_rows = sum_chains(400, seed=1), sum_chains(100, seed=2)
    train, test = write(tmp_path, "stepwise", train_rows, test_rows)
    out = main(PRMScriptConfig(**common(tmp_path, char_model, train, test, max_steps=200, batch_size=32,
                                        learning_rate=3e-3, warmup_steps=20)))
    evaluation = json.loads((out / "evaluation.json").read_text())
    # chance: always guessing the most common first-error index of the held-out chains (about 0.2); the
    # model trained here finds about 0.45
    chance = Counter(first_error(r.labels) for r in test_rows).most_common(1)[0][1] / len(test_rows)
    assert evaluation["first_error_accuracy"] > chance + 0.12, (evaluation, chance)
    # and it beats the best guess from a step's position alone (right for the first two steps, wrong after)
    by_position = sum((i < 2) == label for r in test_rows for i, label in enumerate(r.labels)) / evaluation["steps"]
    assert evaluation["step_accuracy"] > by_position + 0.05, (evaluation, by_position)
