"""A snapshot folder for TRL loads with ``datasets.load_dataset(folder)`` and its matching TRL trainer runs
one step from it on the tiny model: DPO and reward modelling (preference), KTO (unpaired), SFT (each
language-modeling form), GRPO (prompt-only, a reward function that reads the answer column)."""

import math

import pytest
import torch
from datasets import load_dataset

from prefdata.records import PreferenceRow, PromptOnlyRow, SFTRow, UnpairedRow
from prefdata.targets import snapshot_folder_write


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


ROWS = {
    "preference-conversational": ("preference", [
        PreferenceRow(user("What is the capital of France?"), assistant("Paris."), assistant("Rome.")),
        PreferenceRow(user("Why is the sky blue?"), assistant("Air scatters blue light."), assistant("Paint.")),
    ]),
    "preference-margin": ("preference", [
        PreferenceRow("The capital of France is", " Paris.", " Rome.", margin=1.0),
        PreferenceRow("The sky looks blue because", " air scatters blue light.", " of paint.", margin=0.25),
    ]),
    "unpaired": ("unpaired", [
        UnpairedRow(user("What is the capital of France?"), assistant("Paris."), True),
        UnpairedRow(user("What is the capital of France?"), assistant("Rome."), False),
        UnpairedRow(user("Why is the sky blue?"), assistant("Air scatters blue light."), True),
        UnpairedRow(user("Why is the sky blue?"), assistant("Paint."), False),
    ]),
    "sft-messages": ("sft", [SFTRow(messages=user("Capital of France?") + assistant("Paris.")),
                             SFTRow(messages=user("Sky colour?") + assistant("Blue."))]),
    "sft-prompt-completion": ("sft", [SFTRow(prompt="The capital of France is", completion=" Paris."),
                                      SFTRow(prompt="The sky is", completion=" blue.")]),
    "sft-text": ("sft", [SFTRow(text="The sky is blue."), SFTRow(text="The capital of France is Paris.")]),
    "prompt-only": ("prompt_only", [PromptOnlyRow(user("Capital of France?"), answer="Paris", tests=[]),
                                    PromptOnlyRow(user("Which is better, A or B?"), answer="A", tests=[])]),
}


def snapshot(tmp_path, case, file_format):
    kind, rows = ROWS[case]
    result = snapshot_folder_write(tmp_path / case, {"train": rows, "test": rows[:1]}, kind=kind,
                                   file_format=file_format)
    # a cache of its own: datasets keys a local folder's cache by names and times a test run repeats
    dataset = load_dataset(str(result.folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert [dict(row) for row in dataset] == [row.to_dict() for row in rows], "loaded unchanged"
    return dataset


def common(tmp_path):
    return dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3,
                report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
                seed=0)


def one_step(trainer):
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    output = trainer.train()
    assert math.isfinite(output.training_loss)
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(after[name].detach(), p) for name, p in before.items()), "no parameter moved"
    return output


@pytest.fixture
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def causal_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_dpo_trains_on_a_preference_snapshot(tmp_path, tiny_model_dir, tokenizer, file_format):
    from trl import DPOConfig, DPOTrainer

    dataset = snapshot(tmp_path, "preference-conversational", file_format)
    one_step(DPOTrainer(model=causal_lm(tiny_model_dir), args=DPOConfig(max_length=64, **common(tmp_path)),
                        train_dataset=dataset, processing_class=tokenizer))


def test_reward_model_trains_on_a_preference_snapshot_with_margins(tmp_path, tiny_model_dir, tokenizer):
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    dataset = snapshot(tmp_path, "preference-margin", "parquet")
    assert dataset.column_names == ["prompt", "chosen", "rejected", "margin"]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    one_step(RewardTrainer(model=model, args=RewardConfig(max_length=64, **common(tmp_path)), train_dataset=dataset,
                           processing_class=tokenizer))


def test_kto_trains_on_an_unpaired_snapshot(tmp_path, tiny_model_dir, tokenizer):
    from trl import KTOConfig, KTOTrainer

    dataset = snapshot(tmp_path, "unpaired", "jsonl")
    one_step(KTOTrainer(model=causal_lm(tiny_model_dir), args=KTOConfig(max_length=64, **common(tmp_path)),
                        train_dataset=dataset, processing_class=tokenizer))


@pytest.mark.parametrize("case, file_format", [("sft-messages", "jsonl"), ("sft-prompt-completion", "parquet"),
                                               ("sft-text", "jsonl")])
def test_sft_trains_on_each_form_of_sft_snapshot(tmp_path, tiny_model_dir, tokenizer, case, file_format):
    from trl import SFTConfig, SFTTrainer

    dataset = snapshot(tmp_path, case, file_format)
    one_step(SFTTrainer(model=causal_lm(tiny_model_dir), args=SFTConfig(max_length=64, **common(tmp_path)),
                        train_dataset=dataset, processing_class=tokenizer))


def test_grpo_trains_on_a_prompt_only_snapshot_and_rewards_see_the_answers(tmp_path, tiny_model_dir, tokenizer):
    from trl import GRPOConfig, GRPOTrainer

    dataset = snapshot(tmp_path, "prompt-only", "parquet")
    seen = []

    def reward_length(completions, answer, tests, **kwargs):
        # a trivial reward, varied so that the advantages are not all zero
        seen.extend(answer)
        assert all(t == [] for t in tests)
        return [float(len(str(c))) for c in completions]

    args = GRPOConfig(max_completion_length=8, num_generations=2, **common(tmp_path))
    one_step(GRPOTrainer(model=causal_lm(tiny_model_dir), reward_funcs=reward_length, args=args,
                         train_dataset=dataset, processing_class=tokenizer))
    assert set(seen) <= {"Paris", "A"} and seen, "the answer column reaches the reward function"
