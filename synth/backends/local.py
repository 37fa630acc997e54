"""A local transformers model: batched generation and batched log-probability scoring."""

from __future__ import annotations

import functools
import inspect
import threading
from dataclasses import dataclass

from prefdata.records import text_clean
from synth.backends.base import Conversation, Reply, Sampling


class TransformersBackend:
    def __init__(self, model_dir: str, *, dtype: str = "float32", device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model_dir
        self.torch = torch
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        # One model per process is shared by threads; generate is not re-entrant on one model.
        self._lock = threading.Lock()
        # transformers 5 renamed `past_key_values` to `cache` (the old name goes in 5.40).
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        # Prefix sharing copies rows of a plain KV cache; sliding-window or recurrent layers keep other state.
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self._cache_class = DynamicCache
        self._shares_prefix = all(type(layer) is DynamicLayer
                                  for layer in DynamicCache(config=self.model.config).layers)
        # What the last single-token `score` call computed: tokens in the prompts, tokens through the
        # model, padding positions and forward passes (for benchmarks and tests).
        self.last_score_stats: dict[str, int] = {}
        # What one more forward pass costs, in padded tokens, when cutting rows into batches: on a CPU
        # padding is computed like real tokens and a pass costs little more; an accelerator pads for free.
        self._pass_overhead = 32 if self.device.type == "cpu" else 2048

    def _prompt_ids(self, conversation: Conversation) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, conversations: list[Conversation], sampling: Sampling) -> list[list[str]]:
        return self._generate_ids([self._prompt_ids(c) for c in conversations], sampling)

    def render_chat(self, messages: Conversation) -> str:
        """The chat template applied to ``messages``, without a generation prompt (Magpie cuts it)."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def generate_text(self, prefixes: list[str], sampling: Sampling) -> list[list[str]]:
        """Continuations of raw text (no chat template applied): Magpie gives the user-turn prefix only."""
        return self._generate_ids([self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prefixes],
                                  sampling)

    def count_tokens(self, conversations: list[Conversation], replies: list[list[str]]) -> tuple[int, int]:
        """(prompt, completion) tokens of a generate call: what a local run records in place of a bill."""
        prompt = sum(len(self._prompt_ids(c)) * len(r) for c, r in zip(conversations, replies, strict=True))
        completion = sum(len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for r in replies for t in r)
        return prompt, completion

    def _generate_ids(self, prompt_ids: list[list[int]], sampling: Sampling) -> list[list[str]]:
        torch = self.torch
        prompts = [ids for ids in prompt_ids for _ in range(sampling.n)]
        outputs: list[str] = []
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        stops = {pad, *(eos if isinstance(eos, list) else [eos])} - {None}
        with self._lock, torch.inference_mode():
            for start in range(0, len(prompts), sampling.batch_size):
                batch = prompts[start : start + sampling.batch_size]
                width = max(len(p) for p in batch)
                # Left padding, so every row's continuation starts at the same position.
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=self.device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
                kwargs = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": pad}
                if sampling.temperature > 0:
                    kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                for row in out[:, width:]:
                    # A row with no end-of-sequence token ran to max_new_tokens: it was cut.
                    ended = any(t in stops for t in row.tolist())
                    outputs.append(Reply(text_clean(self.tokenizer.decode(row, skip_special_tokens=True)).strip(),
                                         "stop" if ended else "length"))
        return [outputs[i : i + sampling.n] for i in range(0, len(outputs), sampling.n)]

    def score(self, conversations: list[Conversation], candidates: list[list[str]], *,
              batch_size: int = 8, share_prefix: bool = True) -> list[list[float]]:
        """Summed log-probabilities of candidate replies.

        When every candidate is a single token (the usual "A" / "B" verdict), only the distribution after
        the prompt is needed: one forward over each prompt scores all its candidates, and prompts that
        start alike (the two presentation orders of a judged pair) compute their common prefix once
        (see `_next_token_logprobs`; `share_prefix=False` runs each prompt whole).
        """
        torch = self.torch
        prompts = [self._prompt_ids(c) for c in conversations]
        cand_ids = [[self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in cs] for cs in candidates]
        single = all(len(ids) == 1 for cs in cand_ids for ids in cs)
        pad = self.tokenizer.pad_token_id
        with self._lock, torch.inference_mode():
            if single:
                wanted = [[ids[0] for ids in cs] for cs in cand_ids]
                return self._next_token_logprobs(prompts, wanted, batch_size=batch_size, share_prefix=share_prefix)
            flat = [(i, p + c, len(p)) for i, (p, cs) in enumerate(zip(prompts, cand_ids, strict=True)) for c in cs]
            scores: list[float] = []
            for start in range(0, len(flat), batch_size):
                batch = flat[start : start + batch_size]
                width = max(len(seq) for _, seq, _ in batch)
                ids = torch.tensor([seq + [pad] * (width - len(seq)) for _, seq, _ in batch], device=self.device)
                mask = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for _, seq, _ in batch],
                                    device=self.device)
                logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
                for row, (_, seq, plen) in zip(logprobs, batch, strict=True):
                    targets = torch.tensor(seq[plen:], device=self.device)
                    scores.append(row[plen - 1 : len(seq) - 1].gather(1, targets[:, None]).sum().item())
            it = iter(scores)
            return [[next(it) for _ in cs] for cs in cand_ids]

    def _next_token_logprobs(self, prompts: list[list[int]], wanted: list[list[int]], *, batch_size: int,
                             share_prefix: bool) -> list[list[float]]:
        """log p(token | prompt) for the wanted tokens after each prompt.

        1. Plan (`prefix_plan`): a prefix common to all prompts (chat template, judge instructions), computed
           once; groups of prompts sharing a longer prefix (a pair's conversation, before the two orders
           diverge), computed once per group; then each prompt's own suffix on top of its group's KV cache.
        2. Group prefixes run in batches of similar lengths, then suffixes in batches of similar lengths
           (each row's cache gathered from its group, padded), cut by `length_batches`: padding among new
           tokens costs as much as real tokens, padding in the cache only masked attention.
        3. Only each row's last real position goes through the LM head (`logits_to_keep`): projecting every
           position onto the vocabulary costs a fifth of a small model's compute and most of its memory.

        Rows are right-padded and padding can sit inside a row (after a short group prefix, before the
        suffix): the attention mask masks those positions and the position ids are given explicitly, so every
        real token sees the same keys at the same positions as in its prompt alone. No row is masked entirely
        (softmax over nothing): every row starts with a real token.
        """
        torch = self.torch
        lengths = [len(p) for p in prompts]
        stats = {"prompts": len(prompts), "prompt_tokens": sum(lengths), "computed_tokens": 0,
                 "padded_tokens": 0, "forwards": 0}
        self.last_score_stats = stats
        results: list[list[float]] = [[] for _ in prompts]
        if not prompts:
            return results
        common, groups = prefix_plan(prompts)
        batches = functools.partial(length_batches, max_rows=batch_size, overhead=self._pass_overhead)
        if (not share_prefix or not self._shares_prefix or min(lengths) < 2
                or (common == 0 and all(len(g.members) == 1 for g in groups))):
            # Plain: whole prompts, similar lengths together.
            order = sorted(range(len(prompts)), key=lambda i: lengths[i])
            for start, end in batches([lengths[i] for i in order]):
                rows = order[start:end]
                _, _, logprobs = self._rows_forward([prompts[i] for i in rows], stats=stats, keep_cache=False)
                for i, row in zip(rows, logprobs, strict=True):
                    results[i] = row[wanted[i]].tolist()
            return results
        common_cache = None
        if common:
            common_cache, _, _ = self._rows_forward([prompts[0][:common]], stats=stats)
        for window in _windows(groups, max_prompts=_WINDOW_BATCHES * batch_size):
            # The group prefixes, on top of the common prefix: where each group's KV rows are.
            kv: dict[int, tuple] = {}
            by_prefix = sorted(window, key=lambda k: groups[k].shared)
            for start, end in batches([groups[k].shared - common for k in by_prefix]):
                batch = by_prefix[start:end]
                cache, mask = None, None
                if common_cache is not None:
                    cache = self._cache_rows(common_cache, [0] * len(batch))
                    mask = torch.ones((len(batch), common), dtype=torch.long, device=self.device)
                cache, _, _ = self._rows_forward([prompts[groups[k].members[0]][common : groups[k].shared]
                                                  for k in batch], cache=cache, past_mask=mask, stats=stats)
                kv.update((k, (cache, row)) for row, k in enumerate(batch))
            # Each prompt's suffix, on top of its group's prefix.
            members = sorted(((i, k) for k in window for i in groups[k].members),
                             key=lambda m: lengths[m[0]] - groups[m[1]].shared)
            for start, end in batches([lengths[i] - groups[k].shared for i, k in members]):
                batch = members[start:end]
                cache, mask = self._cache_gather([(*kv[k], groups[k].shared) for _, k in batch])
                _, _, logprobs = self._rows_forward([prompts[i][groups[k].shared :] for i, k in batch],
                                                    cache=cache, past_mask=mask, stats=stats, keep_cache=False)
                for (i, _), row in zip(batch, logprobs, strict=True):
                    results[i] = row[wanted[i]].tolist()
        return results

    def _rows_forward(self, rows: list[list[int]], *, cache=None, past_mask=None, stats: dict[str, int],
                      keep_cache: bool = True):
        """One forward of right-padded rows of tokens, each after its row of `cache` (if any).

        Returns the extended cache, the attention mask over cache and rows, and the log-softmax at each
        row's last real token.
        """
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        new_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        mask = new_mask if past_mask is None else torch.cat([past_mask, new_mask], dim=1)
        # The position of a token in its unpadded prompt: the number of real tokens before it.
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -width:]
        last = torch.tensor([[len(r) - 1] for r in rows], device=self.device)
        if keep_cache and cache is None:
            cache = self._cache_class()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=keep_cache,
                         logits_to_keep=last, **{self._cache_kwarg: cache})
        stats["computed_tokens"] += sum(len(r) for r in rows)
        stats["padded_tokens"] += width * len(rows) - sum(len(r) for r in rows)
        stats["forwards"] += 1
        return cache, mask, torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)

    def _cache_rows(self, cache, rows: list[int]):
        """A new KV cache made of the given batch rows of `cache` (which is left as it was: a forward
        extends the cache it is given)."""
        index = self.torch.tensor(rows, device=self.device)
        return self._cache_class([(layer.keys[index], layer.values[index]) for layer in cache.layers])

    def _cache_gather(self, parts: list[tuple]):
        """A KV cache whose row r holds the first n positions of row `row` of `cache`, for each
        (cache, row, n) in `parts`, right-padded; and its attention mask."""
        torch = self.torch
        width = max(n for _, _, n in parts)
        layers = []
        for index in range(len(parts[0][0].layers)):
            gathered = []
            for name in ("keys", "values"):
                like = getattr(parts[0][0].layers[index], name)
                out = like.new_zeros((len(parts), like.shape[1], width, like.shape[3]))
                for r, (cache, row, n) in enumerate(parts):
                    out[r, :, :n] = getattr(cache.layers[index], name)[row, :, :n]
                gathered.append(out)
            layers.append(tuple(gathered))
        mask = torch.tensor([[1] * n + [0] * (width - n) for _, _, n in parts], device=self.device)
        return self._cache_class(layers), mask


# Group prefixes stay in memory (KV cache) for this many batches of prompts, or this many prefix tokens,
# at a time, so that suffixes can be batched by length across groups while memory stays bounded.
_WINDOW_BATCHES = 8
_WINDOW_TOKENS = 32768


def length_batches(lengths: list[int], *, max_rows: int, overhead: int = 32) -> list[tuple[int, int]]:
    """Cut rows sorted by length into batches of at most `max_rows`: (start, end) slices.

    A batch costs its rows times its longest row (padding is computed like real tokens) plus `overhead`
    tokens' worth per forward pass; a dynamic programme over the cut points minimizes the total, so
    a long row is not padded into a batch of short ones only to fill it up.
    """
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest batching of rows[:j]
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max(max_rows, 1)), j):
            cost = best[i] + (j - i) * lengths[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    slices = []
    j = n
    while j > 0:
        slices.append((cut[j], j))
        j = cut[j]
    return slices[::-1]


def _windows(groups: list[PrefixGroup], *, max_prompts: int,
             max_tokens: int = _WINDOW_TOKENS) -> list[list[int]]:
    """Consecutive runs of group indices with at most `max_prompts` members and `max_tokens` prefix tokens
    each (a single group may exceed them)."""
    windows: list[list[int]] = []
    prompts = tokens = 0
    for k, group in enumerate(groups):
        if not windows or prompts + len(group.members) > max_prompts or tokens + group.shared > max_tokens:
            windows.append([])
            prompts = tokens = 0
        windows[-1].append(k)
        prompts += len(group.members)
        tokens += group.shared
    return windows


@dataclass
class PrefixGroup:
    members: list[int]  # indices of prompts
    shared: int  # length of the prefix all members share, computed once for the group


def _common_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_plan(prompts: list[list[int]], *, max_group: int = 64, min_common: int = 8) -> tuple[int, list[PrefixGroup]]:
    """How to share prefix computation among prompts: (common, groups).

    `common` tokens start every prompt and are computed once (0 when fewer than `min_common`). Each group
    then computes its `shared` prefix once and each member its own suffix, which is never empty (its last
    token gives the next-token distribution); `shared > common` always, so no group has an empty segment.

    Sorted lexicographically, prompts that share a prefix are neighbours and a group's shared prefix is
    the smallest common prefix of neighbours inside it; a dynamic programme over the sorted order picks
    the contiguous groups (at most `max_group` members) that minimize the tokens computed.
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    seqs = [prompts[i] for i in order]
    lengths = [len(s) for s in seqs]
    neighbours = [_common_length(a, b) for a, b in zip(seqs, seqs[1:], strict=False)]
    # One token less than possible, so that every group keeps at least one token of its own.
    common = min([*neighbours, min(lengths) - 1]) - 1
    if common < min_common:
        common = 0
    n = len(seqs)
    best = [0] + [float("inf")] * n  # best[j]: fewest tokens to compute for seqs[:j]
    choice = [(0, 0)] * (n + 1)  # (start, shared) of the last group in that optimum
    for j in range(1, n + 1):
        shared, total = lengths[j - 1] - 1, 0
        for i in range(j - 1, max(0, j - max_group) - 1, -1):
            total += lengths[i]
            if i < j - 1:
                shared = min(shared, neighbours[i], lengths[i] - 1)
                if shared <= common:
                    break
            cost = best[i] + (shared - common) + (total - (j - i) * shared)
            if cost < best[j]:
                best[j], choice[j] = cost, (i, shared)
    groups = []
    j = n
    while j > 0:
        i, shared = choice[j]
        groups.append(PrefixGroup(members=[order[k] for k in range(i, j)], shared=shared))
        j = i
    groups.reverse()
    return common, groups
