"""The pure functions of synthetic data (prefdata.synthetic), on hand-made cases."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from prefdata.synthetic import constitutional, evol_instruct, magpie, self_instruct
from prefdata.synthetic.best_of_n import best_of_n_curve, expected_best, kl_bound
from prefdata.synthetic.dedup import NearDuplicateIndex, dedup, jaccard
from prefdata.synthetic.metrics import bleu, distinct_n, lcs_length, rouge_l, rouge_l_max, self_bleu
from prefdata.synthetic.pairs import Candidate, pairs_build

BASE = "Write a short poem about the sea at night with stars and a small boat drifting slowly home"


# -- dedup ---------------------------------------------------------------------------------------------------

def test_dedup_exact_near_and_against_existing():
    texts = [
        BASE,
        "write a short poem about the SEA at night, with stars and a small boat drifting slowly home!",  # exact
        BASE + " again",  # near: one word more
        "Explain how a transistor amplifies a signal in a simple circuit for a beginner student",
        "List three capitals of European countries and one fact about each of them please",
    ]
    existing = ["List three capitals of European countries and one fact about each of them please now"]
    result = dedup(texts, existing=existing, threshold=0.7)
    assert result.kept == [0, 3]
    assert result.removed == {1: ("exact", 0), 2: ("near", 0), 4: ("near", -1)}
    assert result.counts() == {"kept": 2, "exact": 1, "near": 2, "against_existing": 1}


def test_dedup_threshold_decides_near():
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven eight nine eleven"
    similarity = jaccard(a, b)
    assert similarity == pytest.approx(7 / 9)
    assert dedup([a, b], threshold=0.95).kept == [0, 1]
    assert dedup([a, b], threshold=0.6).kept == [0]


def test_dedup_index_carries_across_chunks():
    index = NearDuplicateIndex(threshold=0.8)
    first = dedup([BASE], index=index)
    second = dedup([BASE.upper(), "Something entirely different to say about databases and indexes"], index=index)
    assert first.kept == [0] and second.kept == [1] and second.exact == 1
    with pytest.raises(ValueError):
        NearDuplicateIndex(threshold=0)


# -- diversity and overlap ------------------------------------------------------------------------------------

def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b", "c d"], 2) == 1.0
    assert distinct_n([], 1) == 0.0


def test_bleu_and_self_bleu():
    sentence = "the cat sat on the mat today".split()
    assert bleu(sentence, [sentence]) == pytest.approx(1.0)
    assert bleu(sentence, ["completely different words here now".split()]) < 0.1
    same = ["the cat sat on the mat today"] * 3
    varied = ["the cat sat on the mat today", "a dog ran in the park", "stocks fell sharply on monday"]
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(varied) < 0.2
    assert self_bleu(["only one"]) == 0.0


def test_rouge_l():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    # LCS 3 of 4 and 4 words: precision = recall = 0.75.
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("same words", "Same words.") == 1.0
    assert rouge_l("", "x") == 0.0
    assert rouge_l_max("a b c d", ["x y", "a c d e"]) == pytest.approx(0.75)
    assert rouge_l_max("a", []) == 0.0


# -- Self-Instruct ---------------------------------------------------------------------------------------------

def test_self_instruct_prompt_and_parse():
    text = self_instruct.prompt(["Sort a list.", "Name a colour."])
    assert text.endswith("Task 1: Sort a list.\nTask 2: Name a colour.\nTask 3:")
    parsed = self_instruct.parse(" Write a haiku about rain.\nTask 4: Translate 'hello' to French.\n\n5. Sum 2 and 3.")
    assert parsed == ["Write a haiku about rain.", "Translate 'hello' to French.", "Sum 2 and 3."]


@pytest.mark.parametrize(("task", "reason"), [
    ("Hi there", "too_short"),
    ("word " * 151, "too_long"),
    ("Describe the image attached to this message", "unanswerable"),
    ("Draw a cat with three legs", "unanswerable"),
    ("Summarize the PDF file I sent", "unanswerable"),
    ("I'm sorry, I cannot help with making tasks", "refusal"),
    ("- List three fruits please", "bad_start"),
    ("Écris un poème sur la mer", "bad_start"),
    ("List three fruits that are red", None),
])
def test_self_instruct_filters(task, reason):
    assert self_instruct.filter_reason(task) == reason


# -- Evol-Instruct -----------------------------------------------------------------------------------------------

def test_evol_prompts_name_the_method_and_the_prompt():
    for method in evol_instruct.DEPTH_METHODS:
        text = evol_instruct.evolve_prompt("Add 2 and 3.", method)
        assert "Add 2 and 3." in text and evol_instruct.DEPTH_METHODS[method] in text
    assert "#Created Prompt#" in evol_instruct.evolve_prompt("Add 2 and 3.", "breadth")
    with pytest.raises(ValueError, match="method"):
        evol_instruct.evolve_prompt("x", "louder")
    assert evol_instruct.clean_evolved("#Rewritten Prompt#: Add 2 and 3, then square.") == "Add 2 and 3, then square."
    assert {evol_instruct.method_choose(random.Random(s)) for s in range(50)} == set(evol_instruct.METHODS)


@pytest.mark.parametrize(("evolved", "response", "reason"), [
    ("add 2 and 3!", None, "no_new_information"),
    ("Add it", None, "too_short"),
    ("Rewrite the given prompt: add 2 and 3 then square", None, "copies_prompt"),
    ("Add 2 and 3, then square the sum", "Sorry, I can't do that.", "refusal"),
    ("Add 2 and 3, then square the sum", "the and of it", "empty_response"),
    ("Add 2 and 3, then square the sum", "The sum is 5, squared it is 25.", None),
])
def test_evol_elimination(evolved, response, reason):
    assert evol_instruct.elimination_reason("Add 2 and 3.", evolved, response) == reason


def test_evol_long_apology_is_not_a_refusal():
    long_answer = "Sorry for the wait. " + "The sum is five and its square is twenty-five. " * 10
    assert evol_instruct.elimination_reason("Add 2 and 3.", "Add 2 and 3, then square it", long_answer) is None


# -- Magpie and constitutional prompts -----------------------------------------------------------------------------

def test_magpie_user_turn_prefix():
    def render(messages):
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>\n" for m in messages)

    assert magpie.user_turn_prefix(render) == "<|user|>"
    assert magpie.user_turn_prefix(render, system="Be brief.") == "<|system|>Be brief.<|end|>\n<|user|>"
    with pytest.raises(ValueError):
        magpie.user_turn_prefix(lambda messages: "no content shown")
    assert magpie.clean_instruction(" Name a river.<|end|>\n<|assistant|>The Nile") == "Name a river."


def test_constitutional_messages_and_draw():
    p = constitutional.PrincipleText("harm", "Identify harm.", "Remove harm.")
    convo = [{"role": "user", "content": "Q"}]
    critique = constitutional.critique_messages(convo, "R", p)
    assert [m["role"] for m in critique] == ["user", "assistant", "user"]
    assert "Identify harm." in critique[-1]["content"]
    revision = constitutional.revision_messages(convo, "R", p, "C")
    assert [m["content"] for m in revision[:4]] == ["Q", "R", critique[-1]["content"], "C"]
    assert "Remove harm." in revision[-1]["content"]
    principles = [constitutional.PrincipleText(str(i), "c", "r") for i in range(3)]
    drawn = constitutional.principles_draw(principles, 3, random.Random(1))
    assert sorted(x.name for x in drawn) == ["0", "1", "2"]
    assert len(constitutional.principles_draw(principles, 5, random.Random(1))) == 5
    with pytest.raises(ValueError):
        constitutional.principles_draw([], 1, random.Random(0))


# -- pairs --------------------------------------------------------------------------------------------------------

CANDIDATES = [Candidate("a", "m1", 0.1), Candidate("b", "m1", 0.9), Candidate("c", "m2", 0.5),
              Candidate("d", "m2", 0.45)]


def test_pairs_all_and_across_models():
    assert len(pairs_build(CANDIDATES, "all")) == 6
    # Scored: the better one first.
    assert (1, 0) in pairs_build(CANDIDATES, "all")
    across = pairs_build(CANDIDATES, "across_models", max_pairs=0)
    assert sorted(across) == sorted([(2, 0), (3, 0), (1, 2), (1, 3)])
    assert len(pairs_build(CANDIDATES, "across_models", max_pairs=2)) == 2


def test_pairs_scored_strategies():
    assert pairs_build(CANDIDATES, "best_vs_worst") == [(1, 0)]
    assert pairs_build(CANDIDATES, "best_vs_random", rng=random.Random(3))[0][0] == 1
    assert sorted(pairs_build(CANDIDATES, "margin", margin=0.41)) == [(1, 0), (1, 3)]
    tied = [Candidate("a", score=1.0), Candidate("b", score=1.0)]
    assert pairs_build(tied, "best_vs_worst") == []
    with pytest.raises(ValueError, match="needs a score"):
        pairs_build([Candidate("a"), Candidate("b")], "margin")
    with pytest.raises(ValueError, match="strategy"):
        pairs_build(CANDIDATES, "everything")


def test_pairs_random_and_equal_texts():
    assert len(pairs_build(CANDIDATES, "random", rng=random.Random(0), max_pairs=2)) == 2
    same = [Candidate("x"), Candidate(" x "), Candidate("y")]
    assert pairs_build(same, "all") == [(0, 2), (1, 2)]


# -- best-of-N ----------------------------------------------------------------------------------------------------

def test_expected_best_equals_the_mean_over_all_subsets():
    scores = [0.3, -1.0, 2.5, 0.7, 1.1]
    for k in range(1, 6):
        subsets = list(itertools.combinations(scores, k))
        brute = sum(max(s) for s in subsets) / len(subsets)
        assert expected_best(scores, k) == pytest.approx(brute)
    assert expected_best(scores, 1) == pytest.approx(sum(scores) / 5)
    assert expected_best(scores, 5) == 2.5
    with pytest.raises(ValueError):
        expected_best(scores, 6)


def test_kl_bound_and_curve():
    assert kl_bound(1) == 0.0
    assert kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert kl_bound(16) > kl_bound(4)
    curve = best_of_n_curve([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0, 9.0]])
    assert [row["n"] for row in curve] == [1, 2, 3]
    assert curve[0]["mean_best"] == pytest.approx((1.0 + 15 / 4) / 2)
    # The best of more samples is never worse on average.
    assert curve[0]["mean_best"] <= curve[1]["mean_best"] <= curve[2]["mean_best"]
    assert curve[2]["kl_bound"] == pytest.approx(math.log(3) - 2 / 3)
    assert best_of_n_curve([]) == []
