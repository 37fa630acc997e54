"""Leak-free splits: by the normalised prompt or the paraphrase group, reproducible from a seed, in the
proportions asked for, one row at a time."""

import random
from collections import Counter, defaultdict

import pytest

from prefdata.splits import SplitSpec, prompt_normalise, split_leaks, splits_iter

SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}


def conversation(text: str, system: str | None = None) -> list[dict]:
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": text}]


def corpus(n_prompts: int = 1500, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """About 4000 preference rows: every prompt two or three times (reworded in case and spacing, under
    another system prompt), and a third of the prompts in paraphrase groups of three wordings; the lineage
    (or metadata) beside each row names the group."""
    rnd = random.Random(seed)
    rows, context = [], []
    for p in range(n_prompts):
        group = f"g{p}" if p % 3 == 0 else None
        wordings = [f"Question {p}: how many legs has a spider?"]
        if group:
            wordings += [f"Paraphrase {p}: a spider has how many legs?", f"Reworded {p}: count a spider's legs"]
        for wording in wordings:
            for copy in range(rnd.choice((2, 3))):
                text = wording.upper() if copy == 1 else f"  {wording.replace(' ', '   ')}\n"
                rows.append({"prompt": conversation(text, system="Be brief." if copy == 2 else None),
                             "chosen": [{"role": "assistant", "content": f"8 ({copy})"}],
                             "rejected": [{"role": "assistant", "content": "6"}]})
                context.append({"item": len(rows), "group": group} if group else {"item": len(rows)})
    order = list(range(len(rows)))
    rnd.shuffle(order)
    return [rows[i] for i in order], [context[i] for i in order]


def test_the_normalised_prompt_ignores_case_spacing_and_other_turns():
    a = prompt_normalise(conversation("What  is\n2+2?", system="You are terse."))
    assert a == prompt_normalise("what is 2+2? ") == prompt_normalise(
        [*conversation("WHAT IS 2+2?"), {"role": "assistant", "content": "4"}]) == "what is 2+2?"
    assert prompt_normalise("What is 2+3?") != a
    assert prompt_normalise("Ｗhat is 2+2?") == a  # NFKC: a full-width letter is the letter


def test_no_prompt_and_no_group_is_in_two_splits():
    rows, context = corpus()
    assert len(rows) > 3000
    assigned = list(splits_iter(rows, spec=SplitSpec(SHARES, seed=1), context=context))
    assert split_leaks(assigned) == {}
    groups: dict[str, set[str]] = defaultdict(set)
    for (split, _row), entry in zip(assigned, context, strict=True):
        if "group" in entry:
            groups[entry["group"]].add(split)
    assert groups and all(len(splits) == 1 for splits in groups.values())
    assert {split for split, _ in assigned} == set(SHARES)


def test_without_the_group_paraphrases_would_be_split_apart():
    """The group is what keeps paraphrases together: hashed by prompt alone, groups straddle splits."""
    rows, context = corpus(n_prompts=600)
    spec = SplitSpec(SHARES, seed=1)
    by_group: dict[str, set[str]] = defaultdict(set)
    for (split, _row), entry in zip(splits_iter(rows, spec=spec), context, strict=True):
        if "group" in entry:
            by_group[entry["group"]].add(split)
    assert sum(len(s) > 1 for s in by_group.values()) > 10


def test_the_same_seed_gives_the_same_split_a_different_seed_another():
    rows, context = corpus(n_prompts=500)
    first = [s for s, _ in splits_iter(rows, spec=SplitSpec(SHARES, seed=3), context=context)]
    again = [s for s, _ in splits_iter(rows, spec=SplitSpec(dict(reversed(SHARES.items())), seed=3),
                                       context=context)]
    other = [s for s, _ in splits_iter(rows, spec=SplitSpec(SHARES, seed=4), context=context)]
    assert first == again
    assert sum(a != b for a, b in zip(first, other, strict=True)) > len(rows) * 0.1
    # One row at a time, in another order: each row keeps its split (no shuffle, no state).
    spec = SplitSpec(SHARES, seed=3)
    assert [spec.assign(rows[i], context[i]) for i in reversed(range(len(rows)))] == first[::-1]


def test_the_proportions_are_kept_within_tolerance():
    rows = [{"prompt": f"prompt number {i}"} for i in range(20000)]
    counts = Counter(s for s, _ in splits_iter(rows, spec=SplitSpec({"train": 0.9, "test": 0.1}, seed=11)))
    assert abs(counts["test"] / len(rows) - 0.1) < 0.01
    assert abs(counts["train"] / len(rows) - 0.9) < 0.01
    counts = Counter(s for s, _ in splits_iter(rows, spec=SplitSpec(SHARES, seed=11)))
    assert abs(counts["validation"] / len(rows) - 0.1) < 0.01


def test_a_zero_share_gets_no_rows_and_bad_shares_are_refused():
    rows = [{"prompt": f"p{i}"} for i in range(2000)]
    spec = SplitSpec({"train": 0.9, "validation": 0.0, "test": 0.1})
    assert "validation" not in {s for s, _ in splits_iter(rows, spec=spec)}
    for bad in ({"train": 1.0}, {"train": 0.9, "test": 0.2}, {"train": 1.1, "test": -0.1},
                {"train": 0.5, "": 0.5}, {"train": float("nan"), "test": 0.5}):
        with pytest.raises(ValueError):
            SplitSpec(bad)


def test_prm800k_rows_and_string_prompts_split_by_the_same_key():
    spec = SplitSpec({"train": 0.5, "test": 0.5}, seed=5)
    keys = {spec.key({"question": {"problem": f"Solve x{i}."}}) for i in range(3)}
    assert keys == {spec.key({"prompt": f"solve  X{i}."}) for i in range(3)}
    assert spec.to_dict()["proportions"] == {"test": 0.5, "train": 0.5}
