"""The single-token scoring path (prefix sharing, padding, LM head on the last position only) gives the
numbers of a plain full-sequence log-softmax over each prompt alone."""

import pytest

from synth.backends.local import TransformersBackend, length_batches, prefix_plan

TEMPLATE = ("Compare two responses to the conversation below and decide which one is better.\n\n"
            "[Conversation]\n{conversation}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
            "Which response is better? Answer with one letter, A or B.")


def judge(question: str, first: str, second: str) -> list[dict]:
    return [{"role": "user", "content": TEMPLATE.format(conversation=question, a=first, b=second)}]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(str(tiny_model_dir))


def reference(backend, conversations, candidates):
    """Each prompt alone, no padding, no cache: log-softmax over the full sequence's logits."""
    torch = backend.torch
    rows = []
    with torch.inference_mode():
        for conversation, cands in zip(conversations, candidates, strict=True):
            ids = torch.tensor([backend._prompt_ids(conversation)])
            logprobs = torch.log_softmax(backend.model(input_ids=ids).logits.float(), dim=-1)[0, -1]
            rows.append([logprobs[backend.tokenizer(c, add_special_tokens=False)["input_ids"][0]].item()
                         for c in cands])
    return rows


def assert_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)


ANSWERS = ["The capital of France is Paris.", "Paris.", "Keep a schedule, avoid screens, keep the room cool.",
           "The sky looks blue because air scatters blue light more than red light, which is why it is blue.", "B"]
QUESTIONS = ["What is the capital of France?", "Give me three tips for sleeping better.",
             "Why is the sky blue?"]


def both_orders():
    """Judge prompts as the judge service builds them: each pair in both orders, pairs sharing questions."""
    conversations = []
    for k, question in enumerate(QUESTIONS):
        for a, b in [(ANSWERS[k], ANSWERS[k + 1]), (ANSWERS[k + 2], ANSWERS[k])]:
            conversations += [judge(question, a, b), judge(question, b, a)]
    return conversations


# Prompts sharing nothing past the first tokens, of very different lengths, a prompt that is a prefix
# of another (the same chat, one turn shorter) and a duplicate.
UNRELATED = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A or B?"}],
    [{"role": "user", "content": " ".join(ANSWERS * 4)}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}],
]


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_shared_prefix_scores_equal_the_reference(backend, batch_size):
    conversations = both_orders()
    candidates = [["A", "B"]] * len(conversations)
    got = backend.score(conversations, candidates, batch_size=batch_size)
    stats = backend.last_score_stats
    want = reference(backend, conversations, candidates)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    # The prefixes really were shared: fewer tokens went through the model than the prompts hold.
    assert stats["computed_tokens"] < 0.8 * stats["prompt_tokens"]


def test_padding_between_group_prefix_and_suffix(backend, monkeypatch):
    """Pairs with a short and a long question share one suffix batch: the shorter group's cache row is
    padded before its suffix (a hole in the attention mask), the suffix keeps its true positions."""
    long_question = "Compare two responses and decide which one is better, " * 6 + QUESTIONS[0]
    conversations = [judge(QUESTIONS[2], ANSWERS[0], ANSWERS[2]), judge(QUESTIONS[2], ANSWERS[2], ANSWERS[0]),
                     judge(long_question, ANSWERS[0], ANSWERS[2]), judge(long_question, ANSWERS[2], ANSWERS[0])]
    masks = []
    gather = backend._cache_gather

    def recording(parts):
        cache, mask = gather(parts)
        masks.append(mask)
        return cache, mask

    monkeypatch.setattr(backend, "_cache_gather", recording)
    got = backend.score(conversations, [["A", "B"]] * 4, batch_size=8)
    assert len(masks) == 1 and (masks[0] == 0).any()  # one suffix batch, with a hole
    for g, w in zip(got, reference(backend, conversations, [["A", "B"]] * 4), strict=True):
        assert_close(g, w)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_unrelated_and_mixed_prompts_equal_the_reference(backend, batch_size, share_prefix):
    """Padding inside rows (a short group prefix, a long suffix), rows of very different lengths in one
    batch, a prompt that is a prefix of another, duplicates, and several candidates per prompt."""
    conversations = UNRELATED + both_orders()[:6] + UNRELATED[::-1]
    candidates = [["A", "B", "Response"][: 1 + i % 3] for i in range(len(conversations))]
    assert all(len(backend.tokenizer(c, add_special_tokens=False)["input_ids"]) == 1 for cs in candidates for c in cs)
    got = backend.score(conversations, candidates, batch_size=batch_size, share_prefix=share_prefix)
    want = reference(backend, conversations, candidates)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    assert got[0] == got[-1]  # the duplicate "Hi" prompts, at both ends of the list


def test_single_prompt_and_empty_call(backend):
    conversation = [judge(QUESTIONS[0], ANSWERS[0], ANSWERS[1])]
    assert_close(backend.score(conversation, [["A", "B"]])[0], reference(backend, conversation, [["A", "B"]])[0])
    assert backend.score([], []) == []


def test_scores_do_not_depend_on_what_else_is_in_the_call(backend):
    """A prompt scored alone or among others (other groups, other padding) gets the same numbers."""
    conversations = both_orders()
    together = backend.score(conversations, [["A", "B"]] * len(conversations), batch_size=4)
    alone = backend.score(conversations[5:6], [["A", "B"]])
    assert_close(together[5], alone[0])


def test_general_path_agrees_with_the_single_token_path(backend):
    """Multi-token candidates take the full-sequence path; the first token's score must match."""
    conversations = both_orders()[:4]
    fast = backend.score(conversations, [["A", "B"]] * 4)
    slow = backend.score(conversations, [["A", "B two"]] * 4)
    assert [row[0] for row in fast] == pytest.approx([row[0] for row in slow], abs=1e-4)


def test_prefix_plan_groups_both_orders_and_shares_the_common_head():
    head = list(range(100, 120))
    prompts = []
    for pair in range(3):
        question = [200 + pair] * 10
        a, b = [300 + pair] * 15, [400 + pair] * 12
        prompts += [head + question + a + b + [7], head + question + b + a + [7]]
    common, groups = prefix_plan(prompts, max_group=8)
    # The shared head is computed once (less one token, so that each group keeps a segment of its own).
    assert common == len(head) - 1
    assert sorted(sorted(g.members) for g in groups) == [[0, 1], [2, 3], [4, 5]]
    assert all(g.shared == len(head) + 10 for g in groups)
    # Every group has a segment of its own after the common head, every member a non-empty suffix.
    assert all(g.shared > common and all(len(prompts[i]) > g.shared for i in g.members) for g in groups)


def test_prefix_plan_limits_groups_and_handles_duplicates_and_prefixes():
    prompts = [[1, 2, 3, 4, 5]] * 5 + [[1, 2, 3], [9]]
    common, groups = prefix_plan(prompts, max_group=2)
    assert common == 0  # [9] shares nothing
    assert max(len(g.members) for g in groups) <= 2
    assert sorted(i for g in groups for i in g.members) == list(range(7))
    for g in groups:
        assert all(prompts[i][: g.shared] == prompts[g.members[0]][: g.shared] for i in g.members)
        assert all(len(prompts[i]) > g.shared for i in g.members)


def test_length_batches_keep_long_rows_out_of_short_batches():
    lengths = [20, 22, 25, 30, 200, 210]
    cuts = length_batches(lengths, max_rows=8, overhead=32)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:], strict=False))  # contiguous, in order
    assert all(0 < end - start <= 8 for start, end in cuts)
    assert (0, 4) in cuts  # the short rows are not padded to 200 tokens
    # Equal rows fill batches up to the limit; a huge per-pass cost means one batch whatever the padding.
    assert length_batches([285] * 16, max_rows=8, overhead=32) == [(0, 8), (8, 16)]
    assert length_batches(lengths, max_rows=8, overhead=10_000) == [(0, 6)]
