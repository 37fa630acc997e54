"""The work of each kind of synthesis job, under the job lifecycle (``synth.services.synthesis_job_run``).

Every kind runs in chunks. A chunk is generated outside any transaction, then its rows, the units it
finished (``SynthesisStep``: a prompt answered, a round of instructions) and the job's counters (tokens,
cost, time, what was filtered or removed as a duplicate) commit in one transaction. A worker killed in a
chunk leaves nothing of it, and the resumed job skips the units already stored: no row is made twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from annotate.job_lifecycle import JobContext, JobFailed
from annotate.models import Completion, Prompt
from annotate.services import pair_item_create
from prefdata.synthetic import constitutional, evol_instruct, magpie, self_instruct
from prefdata.synthetic.best_of_n import best_of_n_curve
from prefdata.synthetic.dedup import NearDuplicateIndex, dedup
from prefdata.synthetic.metrics import diversity, rouge_l_max
from prefdata.synthetic.pairs import Candidate, pairs_build
from synth.backends.base import Backend, Conversation, Sampling
from synth.models import Generation, ModelEndpoint, Principle, SynthesisJob, SynthesisStep, SyntheticRow
from synth.selectors import prompt_depths

# The most texts a job's diversity is measured on (self-BLEU samples 200 of them in turn).
DIVERSITY_TEXTS = 2000


@dataclass
class Chunk:
    """What a chunk adds to the job's counters, and the units it finishes."""

    keys: list[str]
    counts: Counter = field(default_factory=Counter)
    # Entries merged into dicts of the job's stats: {"pass_at_k_by_problem": {"12": {...}}}.
    merge: dict[str, dict] = field(default_factory=dict)


class Run:
    """One attempt at a job: its backends, spending, finished units and the chunk commit."""

    def __init__(self, job: SynthesisJob, ctx: JobContext) -> None:
        from synth.services import Spending, endpoint_backend

        self.job, self.ctx, self.params = job, ctx, job.params
        self.sampling = Sampling(max_new_tokens=self.params["max_new_tokens"],
                                 temperature=self.params["temperature"], top_p=self.params["top_p"],
                                 seed=self.params["seed"], batch_size=self.params["batch_size"])
        self.endpoints = [job.endpoint, *ModelEndpoint.objects.filter(
            pk__in=self.params.get("extra_endpoints") or []).order_by("pk")]
        self.backends: dict[int, Backend] = {e.pk: endpoint_backend(endpoint=e) for e in self.endpoints}
        spent = (job.stats or {}).get("cost_by_endpoint", {})
        self.spending = {e.pk: Spending(endpoint=e, backend=self.backends[e.pk], spent=float(spent.get(str(e.pk), 0)))
                         for e in self.endpoints}
        self.scorer = endpoint_backend(endpoint=job.scorer) if job.scorer_id else None
        self.done = set(SynthesisStep.objects.filter(job=job).values_list("key", flat=True))
        self.tokens = [0, 0]  # local models: counted here, since no bill counts them
        self.started = time.monotonic()
        self.rng = random.Random(self.params.get("seed"))

    # -- generation --------------------------------------------------------------------------------------

    def conversation(self, messages: Conversation) -> Conversation:
        system = self.params.get("system_prompt") or ""
        if system and not any(m.get("role") == "system" for m in messages):
            return [{"role": "system", "content": system}, *messages]
        return list(messages)

    def generate(self, conversations: list[Conversation], *, n: int = 1, endpoint: ModelEndpoint | None = None,
                 sampling: Sampling | None = None) -> list[list[str]]:
        endpoint = endpoint or self.job.endpoint
        if not conversations:
            return []
        backend = self.backends[endpoint.pk]
        sampling = sampling or self.sampling
        replies = backend.generate(conversations, Sampling(**{**sampling.__dict__, "n": n}))
        self._count(backend, conversations, replies)
        return replies

    def _count(self, backend: Backend, conversations: list[Conversation], replies: list[list[str]]) -> None:
        count = getattr(backend, "count_tokens", None)
        if count is not None:
            prompt, completion = count(conversations, replies)
            self.tokens[0] += prompt
            self.tokens[1] += completion

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[float]:
        if self.scorer is None:
            raise JobFailed("This job needs a scorer endpoint (a reward model) and has none.")
        return self.scorer.score_responses(conversations, responses)

    def check(self) -> None:
        """Stop when cancelled or taken over, or before a batch that would pass a spending cap."""
        self.ctx.check()
        for spending in self.spending.values():
            spending.check()
        cap = self.params.get("max_cost")
        spent = sum(s.spent for s in self.spending.values())
        last = sum(s.last_batch for s in self.spending.values())
        if cap is not None and (spent + last > cap or 0 < cap <= spent):
            raise JobFailed(f"Stopped at the job's spending cap: spent {spent:.6g} of {cap:g}, and the next batch "
                            f"would pass it. What is done is kept: raise max_cost, then retry to go on.")

    # -- commit ------------------------------------------------------------------------------------------

    def commit(self, chunk: Chunk, write: Callable[[], None]) -> None:
        """Store a chunk's rows, its finished units and the job's counters in one transaction."""
        seconds = time.monotonic() - self.started
        with transaction.atomic():
            job = SynthesisJob.objects.select_for_update().get(pk=self.job.pk)
            write()
            SynthesisStep.objects.bulk_create([SynthesisStep(job=job, key=k) for k in chunk.keys])
            stats = dict(job.stats or {})
            counts = Counter(stats.get("counts", {}))
            counts.update(chunk.counts)
            stats["counts"] = dict(counts)
            for name, entries in chunk.merge.items():
                stats[name] = {**(stats.get(name) or {}), **entries}
            by_endpoint = dict(stats.get("cost_by_endpoint", {}))
            paid_prompt = paid_completion = 0
            for pk, spending in self.spending.items():
                before = spending._tokens
                by_endpoint[str(pk)] = spending.batch_done()
                after = spending._tokens
                paid_prompt += after[0] - before[0]
                paid_completion += after[1] - before[1]
            stats["cost_by_endpoint"] = by_endpoint
            SynthesisJob.objects.filter(pk=job.pk).update(
                stats=stats, cost=sum(by_endpoint.values()), seconds=F("seconds") + seconds,
                prompt_tokens=F("prompt_tokens") + self.tokens[0] + paid_prompt,
                completion_tokens=F("completion_tokens") + self.tokens[1] + paid_completion)
            self.job.stats = stats
        self.tokens = [0, 0]
        self.started = time.monotonic()
        self.done.update(chunk.keys)

    # -- outputs -----------------------------------------------------------------------------------------

    def completion_create(self, *, prompt: Prompt, text: str, endpoint: ModelEndpoint, depth: int,
                          parents: list[dict], extra: dict | None = None) -> Completion:
        sampling = {**self.sampling.as_dict(), "finish_reason": getattr(text, "finish_reason", ""), **(extra or {})}
        completion = Completion.objects.create(prompt=prompt, text=str(text), model_name=endpoint.name,
                                               sampling=sampling)
        Generation.objects.create(completion=completion, endpoint=endpoint, job=self.job, sampling=sampling,
                                  parents=parents, depth=depth)
        return completion

    def prompt_create(self, *, text: str, depth: int, parents: list[dict], meta: dict) -> Prompt:
        prompt = Prompt.objects.create(project=self.job.project, messages=[{"role": "user", "content": text}],
                                       source=f"synthesis:{self.job.pk}:{self.job.kind}",
                                       metadata={"synthesis_job": self.job.pk, "depth": depth})
        self.row_create(kind=SyntheticRow.Kind.PROMPT, prompt=prompt, depth=depth, parents=parents, meta=meta)
        return prompt

    def row_create(self, *, kind: str, depth: int, parents: list[dict], meta: dict, **fields) -> SyntheticRow:
        return SyntheticRow.objects.create(project=self.job.project, job=self.job, kind=kind,
                                           endpoint=fields.pop("endpoint", self.job.endpoint), params=self.params,
                                           depth=depth, parents=parents, meta=meta, **fields)

    # -- inputs ------------------------------------------------------------------------------------------

    def input_prompts(self) -> list[Prompt]:
        """The project's prompts this job works on (fixed when it was created), not yet done."""
        prompts = Prompt.objects.filter(project=self.job.project, pk__lte=self.params.get("_upto_prompt", 0))
        prompts = prompts.order_by("id")
        if self.params.get("max_prompts"):
            prompts = prompts[: self.params["max_prompts"]]
        return [p for p in prompts if f"prompt:{p.pk}" not in self.done]

    def dedup_index(self) -> NearDuplicateIndex:
        """The project's prompts (as existing texts) and this job's new prompts so far (as its own)."""
        index = NearDuplicateIndex(threshold=self.params.get("dedup_threshold", 0.8))
        mine = set(SyntheticRow.objects.filter(job=self.job, kind=SyntheticRow.Kind.PROMPT)
                   .values_list("prompt_id", flat=True))
        for prompt in Prompt.objects.filter(project=self.job.project).only("id", "messages").order_by("id"):
            index.add(prompt.last_user_text, existing=prompt.pk not in mine)
        return index

    def progress(self, done: int, total: int) -> None:
        self.ctx.progress(done, total)


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- response sampling and best-of-N ---------------------------------------------------------------------------


def sampling_work(run: Run) -> None:
    """N completions per prompt from each endpoint; near-duplicates among a prompt's samples dropped; pairs by
    the chosen strategy (scored ones scored by the scorer). Best-of-N: the best as an SFT row, best-vs-worst
    as a pair, every score kept for the best-of-N curve."""
    job, params = run.job, run.params
    best_of_n = job.kind == SynthesisJob.Kind.BEST_OF_N
    strategy = "best_vs_worst" if best_of_n else params["strategy"]
    todo = run.input_prompts()
    total = len(run.done) + len(todo)
    depths = prompt_depths(prompt_ids=[p.pk for p in todo])
    run.progress(len(run.done), total)
    for chunk in _chunks(todo, params["batch_size"]):
        run.check()
        conversations = [run.conversation(p.messages) for p in chunk]
        samples: list[list[tuple[ModelEndpoint, str]]] = [[] for _ in chunk]
        for endpoint in run.endpoints:
            for i, replies in enumerate(run.generate(conversations, n=params["n"], endpoint=endpoint)):
                samples[i].extend((endpoint, r) for r in replies)
        counts: Counter = Counter()
        kept: list[list[tuple[ModelEndpoint, str]]] = []
        for group in samples:
            result = dedup([t for _, t in group], threshold=params["dedup_threshold"])
            counts["duplicates_exact"] += result.exact
            counts["duplicates_near"] += result.near
            kept.append([group[i] for i in result.kept])
        scores: list[list[float] | None] = [None] * len(chunk)
        if run.scorer is not None:
            flat = [(i, t) for i, group in enumerate(kept) for _, t in group]
            values = iter(run.score([conversations[i] for i, _ in flat], [t for _, t in flat]))
            scores = [[next(values) for _ in group] for group in kept]
        counts["samples"] += sum(len(g) for g in samples)

        def write(chunk=chunk, kept=kept, scores=scores, counts=counts) -> None:
            for prompt, group, group_scores in zip(chunk, kept, scores, strict=True):
                depth = depths.get(prompt.pk, 0) + 1
                made = [run.completion_create(prompt=prompt, text=text, endpoint=endpoint, depth=depth,
                                              parents=[{"prompt": prompt.pk}],
                                              extra={} if group_scores is None else {"score": group_scores[k]})
                        for k, (endpoint, text) in enumerate(group)]
                candidates = [Candidate(str(text), endpoint.name, None if group_scores is None else group_scores[k])
                              for k, (endpoint, text) in enumerate(group)]
                rng = random.Random(f"{params['seed']}:{prompt.pk}")
                for a, b in pairs_build(candidates, strategy, rng=rng, max_pairs=params.get("max_pairs", 1),
                                        margin=params.get("margin", 0.0)):
                    item = pair_item_create(prompt=prompt, completion_a=made[a], completion_b=made[b])
                    meta = {"strategy": strategy}
                    if group_scores is not None:
                        meta.update(chosen=made[a].pk, scores=[group_scores[a], group_scores[b]],
                                    margin=group_scores[a] - group_scores[b])
                    run.row_create(kind=SyntheticRow.Kind.PAIR, prompt=prompt, pair_item=item, depth=depth,
                                   parents=[{"completion": made[a].pk}, {"completion": made[b].pk}], meta=meta)
                    counts["pairs"] += 1
                if best_of_n and made:
                    best = max(range(len(made)), key=lambda k: group_scores[k])
                    run.row_create(kind=SyntheticRow.Kind.SFT, prompt=prompt, messages=prompt.messages,
                                   completion=made[best].text, depth=depth,
                                   parents=[{"prompt": prompt.pk}, {"completion": made[best].pk}],
                                   meta={"scores": group_scores, "best": made[best].pk,
                                         "scorer": job.scorer.name if job.scorer_id else ""})
                    counts["sft"] += 1

        run.commit(Chunk([f"prompt:{p.pk}" for p in chunk], counts), write)
        run.progress(len(run.done), total)


# -- constitutional critique and revision ------------------------------------------------------------------------


def constitutional_work(run: Run) -> None:
    """SL-CAI (``prefdata.synthetic.constitutional``): a response, then k rounds of critique and revision, each
    under a principle drawn from the job's constitution; the final revision as an SFT row and the pair
    revision-over-original, both recording the principles and the constitution's version."""
    job, params = run.job, run.params
    principles = list(Principle.objects.filter(constitution=job.constitution))
    texts = [constitutional.PrincipleText(p.name, p.critique_request, p.revision_request) for p in principles]
    by_name = {p.name: p for p in principles}
    todo = run.input_prompts()
    total = len(run.done) + len(todo)
    depths = prompt_depths(prompt_ids=[p.pk for p in todo])
    run.progress(len(run.done), total)
    for chunk in _chunks(todo, params["batch_size"]):
        run.check()
        conversations = [run.conversation(p.messages) for p in chunk]
        original = [r[0] for r in run.generate(conversations)]
        current = list(original)
        drawn = [constitutional.principles_draw(texts, params["rounds"], random.Random(f"{params['seed']}:{p.pk}"))
                 for p in chunk]
        history: list[list[dict]] = [[] for _ in chunk]
        for k in range(params["rounds"]):
            asks = [constitutional.critique_messages(c, r, d[k]) for c, r, d in zip(conversations, current, drawn,
                                                                                     strict=True)]
            critiques = [r[0] for r in run.generate(asks)]
            asks = [constitutional.revision_messages(c, r, d[k], cr)
                    for c, r, d, cr in zip(conversations, current, drawn, critiques, strict=True)]
            revisions = [constitutional.clean_revision(r[0]) for r in run.generate(asks)]
            for i in range(len(chunk)):
                history[i].append({"principle": drawn[i][k].name, "critique": str(critiques[i]),
                                   "revision": revisions[i]})
                current[i] = revisions[i] or current[i]
        counts: Counter = Counter()

        def write(chunk=chunk, original=original, current=current, history=history, drawn=drawn,
                  counts=counts) -> None:
            for prompt, first, final, steps, used in zip(chunk, original, current, history, drawn, strict=True):
                depth = depths.get(prompt.pk, 0) + 1
                principles_used = [{"id": by_name[p.name].pk, "name": p.name} for p in used]
                meta = {"constitution": job.constitution_id, "constitution_version": job.constitution_version,
                        "principles": principles_used}
                a = run.completion_create(prompt=prompt, text=first, endpoint=job.endpoint, depth=depth,
                                          parents=[{"prompt": prompt.pk}])
                b = run.completion_create(prompt=prompt, text=final, endpoint=job.endpoint, depth=depth + 1,
                                          parents=[{"completion": a.pk}], extra={"revision_of": a.pk, **meta})
                run.row_create(kind=SyntheticRow.Kind.SFT, prompt=prompt, messages=prompt.messages, completion=final,
                               depth=depth + 1, parents=[{"prompt": prompt.pk}, {"completion": a.pk}],
                               meta={**meta, "rounds": steps})
                counts["sft"] += 1
                if str(final).strip() != str(first).strip():
                    item = pair_item_create(prompt=prompt, completion_a=b, completion_b=a)
                    run.row_create(kind=SyntheticRow.Kind.PAIR, prompt=prompt, pair_item=item, depth=depth + 1,
                                   parents=[{"completion": b.pk}, {"completion": a.pk}],
                                   meta={**meta, "chosen": b.pk, "strategy": "revision_over_original"})
                    counts["pairs"] += 1
                else:
                    counts["unchanged"] += 1

        run.commit(Chunk([f"prompt:{p.pk}" for p in chunk], counts), write)
        run.progress(len(run.done), total)


# -- Evol-Instruct -------------------------------------------------------------------------------------------------


@dataclass
class _Evolved:
    text: str
    parent: int  # index into the chain (0: the input prompt)
    method: str
    round: int
    response: str | None


def evol_instruct_work(run: Run) -> None:
    """Each input prompt evolves for the given rounds by a method drawn per round; an evolution that fails
    an elimination rule is dropped and the next round evolves its parent again (as the paper returns it to
    the pool); survivors that repeat a prompt of the project are removed."""
    job, params = run.job, run.params
    todo = run.input_prompts()
    total = len(run.done) + len(todo)
    depths = prompt_depths(prompt_ids=[p.pk for p in todo])
    index = run.dedup_index()
    run.progress(len(run.done), total)
    for chunk in _chunks(todo, params["batch_size"]):
        run.check()
        rngs = [random.Random(f"{params['seed']}:{p.pk}") for p in chunk]
        chains: list[list[_Evolved]] = [[_Evolved(p.last_user_text, -1, "", 0, None)] for p in chunk]
        current = [0 for _ in chunk]
        counts: Counter = Counter()
        for r in range(1, params["rounds"] + 1):
            methods = [evol_instruct.method_choose(rng, params["methods"]) for rng in rngs]
            asks = [[{"role": "user", "content": evol_instruct.evolve_prompt(chain[c].text, m)}]
                    for chain, c, m in zip(chains, current, methods, strict=True)]
            evolved = [evol_instruct.clean_evolved(x[0]) for x in run.generate(asks)]
            responses = [None] * len(chunk)
            if params["answer"]:
                responses = [x[0] for x in run.generate([run.conversation([{"role": "user", "content": e}])
                                                         for e in evolved])]
            for i, (text, response) in enumerate(zip(evolved, responses, strict=True)):
                parent = chains[i][current[i]].text
                reason = evol_instruct.elimination_reason(parent, text, response)
                if reason is None:
                    found = index.find(text)
                    if found is not None:
                        reason = "duplicate_existing" if found[1] < 0 else f"duplicate_{found[0]}"
                if reason is not None:
                    counts[f"eliminated_{reason}"] += 1
                    continue
                index.add(text)
                chains[i].append(_Evolved(text, current[i], methods[i], r, response))
                current[i] = len(chains[i]) - 1

        def write(chunk=chunk, chains=chains, counts=counts) -> None:
            for prompt, chain in zip(chunk, chains, strict=True):
                made: list[Prompt] = [prompt]
                made_depth = [depths.get(prompt.pk, 0)]
                for step in chain[1:]:
                    parent, depth = made[step.parent], made_depth[step.parent] + 1
                    new = run.prompt_create(text=step.text, depth=depth, parents=[{"prompt": parent.pk}],
                                            meta={"method": step.method, "round": step.round,
                                                  "root": prompt.pk})
                    made.append(new)
                    made_depth.append(depth)
                    counts["prompts"] += 1
                    if step.response is not None:
                        run.completion_create(prompt=new, text=step.response, endpoint=job.endpoint,
                                              depth=depth + 1, parents=[{"prompt": new.pk}])

        run.commit(Chunk([f"prompt:{p.pk}" for p in chunk], counts), write)
        run.progress(len(run.done), total)


# -- Self-Instruct and Magpie -------------------------------------------------------------------------------------


@dataclass
class _PoolTask:
    text: str
    prompt_id: int | None
    depth: int


def self_instruct_work(run: Run) -> None:
    """Rounds of Self-Instruct (``prefdata.synthetic.self_instruct``): each round asks ``batch_size`` times
    for tasks continuing a numbered list drawn from the pool; a new task is kept when it passes the filters,
    its ROUGE-L against the pool is below the threshold and it repeats no prompt of the project."""
    job, params = run.job, run.params
    pool = _self_instruct_pool(run)
    index = run.dedup_index()
    made = SyntheticRow.objects.filter(job=job, kind=SyntheticRow.Kind.PROMPT).count()
    target = params["num_instructions"]
    run.progress(made, target)
    for r in range(params["max_rounds"]):
        key = f"round:{r}"
        if key in run.done:
            continue
        if made >= target:
            break
        run.check()
        rng = random.Random(f"{params['seed']}:{r}")
        shown = [rng.sample(pool, min(params["examples"], len(pool))) for _ in range(params["batch_size"])]
        # A seed of its own per round: the same tasks shown again are not answered from the cache alike.
        sampling = Sampling(**{**run.sampling.__dict__,
                               "seed": None if params["seed"] is None else params["seed"] + r})
        answers = run.generate([[{"role": "user", "content": self_instruct.prompt([t.text for t in tasks])}]
                                for tasks in shown], sampling=sampling)
        counts: Counter = Counter()
        kept: list[tuple[str, list[_PoolTask]]] = []
        for tasks, answer in zip(shown, answers, strict=True):
            for text in self_instruct.parse(answer[0]):
                counts["candidates"] += 1
                reason = self_instruct.filter_reason(text, min_words=params["min_words"],
                                                     max_words=params["max_words"])
                if reason is None and rouge_l_max(text, [t.text for t in pool]) >= params["rouge_threshold"]:
                    reason = "rouge"
                if reason is None:
                    found = index.find(text)
                    if found is not None:
                        reason = "duplicate_existing" if found[1] < 0 else f"duplicate_{found[0]}"
                if reason is not None:
                    counts[f"filtered_{reason}"] += 1
                    continue
                if made + len(kept) >= target:
                    break
                index.add(text)
                kept.append((text, tasks))
                pool.append(_PoolTask(text, None, max(t.depth for t in tasks) + 1))

        def write(kept=kept, counts=counts, r=r) -> None:
            for text, tasks in kept:
                depth = max(t.depth for t in tasks) + 1
                prompt = run.prompt_create(
                    text=text, depth=depth,
                    parents=[{"prompt": t.prompt_id} if t.prompt_id else {"seed_task": t.text} for t in tasks],
                    meta={"round": r})
                for task in pool:
                    if task.prompt_id is None and task.text == text:
                        task.prompt_id = prompt.pk
                counts["prompts"] += 1

        run.commit(Chunk([key], counts), write)
        made += len(kept)
        run.progress(min(made, target), target)


def _self_instruct_pool(run: Run) -> list[_PoolTask]:
    """The seed tasks (given, or the project's prompts as they were when the job was made) and the tasks
    this job kept so far."""
    params = run.params
    if params["seed_tasks"]:
        pool = [_PoolTask(t, None, 0) for t in params["seed_tasks"]]
    else:
        seeds = list(Prompt.objects.filter(project=run.job.project, pk__lte=params.get("_upto_prompt", 0))
                     .order_by("id")[:1000])
        depths = prompt_depths(prompt_ids=[p.pk for p in seeds])
        pool = [_PoolTask(p.last_user_text, p.pk, depths.get(p.pk, 0)) for p in seeds]
    for row in SyntheticRow.objects.filter(job=run.job, kind=SyntheticRow.Kind.PROMPT).select_related("prompt"):
        pool.append(_PoolTask(row.prompt.last_user_text, row.prompt_id, row.depth))
    if not pool:
        raise JobFailed("Self-Instruct needs seed tasks: give seed_tasks or import prompts into the project first.")
    return pool


def magpie_work(run: Run) -> None:
    """Magpie (``prefdata.synthetic.magpie``): each round the local model continues its own user-turn prefix
    ``batch_size`` times; each instruction that passes the filters and repeats no prompt becomes a prompt,
    and with ``answer`` its answer an SFT row."""
    job, params = run.job, run.params
    backend = run.backends[job.endpoint.pk]
    if not hasattr(backend, "generate_text"):
        raise JobFailed(f"Magpie needs a local model with a chat template; {job.endpoint.name!r} is not one.")
    prefix = magpie.user_turn_prefix(backend.render_chat, system=params["system_prompt"])
    index = run.dedup_index()
    made = SyntheticRow.objects.filter(job=job, kind=SyntheticRow.Kind.PROMPT).count()
    target = params["num_instructions"]
    run.progress(made, target)
    for r in range(params["max_rounds"]):
        key = f"round:{r}"
        if key in run.done:
            continue
        if made >= target:
            break
        run.check()
        sampling = Sampling(**{**run.sampling.__dict__, "n": params["batch_size"],
                               "seed": None if params["seed"] is None else params["seed"] + r})
        raw = backend.generate_text([prefix], sampling)[0]
        counts: Counter = Counter()
        kept: list[str] = []
        for text in (magpie.clean_instruction(t) for t in raw):
            counts["candidates"] += 1
            reason = self_instruct.filter_reason(text, min_words=params["min_words"], max_words=params["max_words"])
            if reason is None:
                found = index.find(text)
                if found is not None:
                    reason = "duplicate_existing" if found[1] < 0 else f"duplicate_{found[0]}"
            if reason is not None:
                counts[f"filtered_{reason}"] += 1
                continue
            if made + len(kept) >= target:
                break
            index.add(text)
            kept.append(text)
        answers = [None] * len(kept)
        if params["answer"] and kept:
            answers = [a[0] for a in run.generate([run.conversation([{"role": "user", "content": t}])
                                                   for t in kept])]

        def write(kept=kept, answers=answers, counts=counts, r=r) -> None:
            for text, answer in zip(kept, answers, strict=True):
                prompt = run.prompt_create(text=text, depth=1, parents=[], meta={"round": r, "prefix": prefix})
                counts["prompts"] += 1
                if answer is not None:
                    c = run.completion_create(prompt=prompt, text=answer, endpoint=job.endpoint, depth=2,
                                              parents=[{"prompt": prompt.pk}])
                    run.row_create(kind=SyntheticRow.Kind.SFT, prompt=prompt, messages=prompt.messages,
                                   completion=c.text, depth=2, parents=[{"prompt": prompt.pk}, {"completion": c.pk}],
                                   meta={"round": r})
                    counts["sft"] += 1

        run.commit(Chunk([key], counts), write)
        made += len(kept)
        run.progress(min(made, target), target)


# -- reasoning traces and Math-Shepherd ---------------------------------------------------------------------------


def traces_work(run: Run) -> None:
    """Reasoning traces (rejection sampling; STaR, Zelikman et al. 2022, arXiv:2203.14465): k traces per
    problem in the job's format, each verified (a math answer against the reference, code against its tests
    in the sandbox). Every correct trace becomes an SFT row; a correct trace over a wrong one a pair; the
    problem's pass@1 and pass@k (unbiased estimator) go to the job's stats."""
    from synth.problems import problem_messages, problems_select
    from synth.verification import pass_rates, trace_verify

    job, params = run.job, run.params
    problems = problems_select(project=job.project, tags=params["tags"], split=params["split"] or None)
    problems = problems.filter(pk__lte=params.get("_upto_problem", 0))
    if params["max_problems"]:
        problems = problems[: params["max_problems"]]
    problems = list(problems)
    todo = [p for p in problems if f"problem:{p.pk}" not in run.done]
    total = len(problems)
    done = total - len(todo)
    run.progress(done, total)
    for chunk in _chunks(todo, params["batch_size"]):
        run.check()
        replies = run.generate([run.conversation(problem_messages(p)) for p in chunk], n=params["n"])
        checks = [[trace_verify(problem=p, text=str(t)) for t in group]
                  for p, group in zip(chunk, replies, strict=True)]
        counts: Counter = Counter()
        rates: dict[str, dict] = {}
        for problem, group in zip(chunk, checks, strict=True):
            correct = sum(1 for c in group if c["correct"])
            rates[str(problem.pk)] = pass_rates(n=len(group), c=correct)
            counts["traces"] += len(group)
            counts["traces_correct"] += correct
            counts["problems_solved" if correct else "problems_unsolved"] += 1

        def write(chunk=chunk, replies=replies, checks=checks, counts=counts) -> None:
            for problem, group, verdicts in zip(chunk, replies, checks, strict=True):
                prompt = _problem_prompt(run, problem)
                made = [run.completion_create(prompt=prompt, text=text, endpoint=job.endpoint, depth=1,
                                              parents=[{"prompt": prompt.pk}], extra={"verification": verdict})
                        for text, verdict in zip(group, verdicts, strict=True)]
                meta = {"problem": problem.pk, "kind": problem.kind}
                right = [k for k, v in enumerate(verdicts) if v["correct"]]
                wrong = [k for k, v in enumerate(verdicts) if not v["correct"]]
                for k in right:
                    run.row_create(kind=SyntheticRow.Kind.SFT, prompt=prompt, messages=prompt.messages,
                                   completion=made[k].text, depth=1,
                                   parents=[{"prompt": prompt.pk}, {"completion": made[k].pk}],
                                   meta={**meta, "verification": verdicts[k]})
                    counts["sft"] += 1
                rng = random.Random(f"{params['seed']}:{problem.pk}")
                for a, b in list(zip(right, wrong, strict=False))[: params["max_pairs"]]:
                    # Which side is shown first is drawn: annotators must not learn that A is the right one.
                    first, second = (made[a], made[b]) if rng.random() < 0.5 else (made[b], made[a])
                    item = pair_item_create(prompt=prompt, completion_a=first, completion_b=second)
                    run.row_create(kind=SyntheticRow.Kind.PAIR, prompt=prompt, pair_item=item, depth=1,
                                   parents=[{"completion": made[a].pk}, {"completion": made[b].pk}],
                                   meta={**meta, "chosen": made[a].pk, "rejected": made[b].pk,
                                         "strategy": "verified_over_wrong",
                                         "verification": [verdicts[a], verdicts[b]]})
                    counts["pairs"] += 1

        run.commit(Chunk([f"problem:{p.pk}" for p in chunk], counts, {"pass_at_k_by_problem": rates}), write)
        done += len(chunk)
        run.progress(done, total)


def _problem_prompt(run: Run, problem) -> Prompt:  # noqa: ANN001 - a synth.models.Problem
    """The project prompt that asks the problem, made the first time (its metadata links back: the problem
    id and its answer, which Math-Shepherd and exports read)."""
    from synth.models import Problem
    from synth.problems import problem_messages

    if problem.prompt_id is not None:
        found = Prompt.objects.filter(pk=problem.prompt_id).first()
        if found is not None:
            return found
    metadata = {"problem": problem.pk, "split": problem.split, "tags": list(problem.tags)}
    if problem.answer:
        metadata["answer"] = problem.answer
    prompt = Prompt.objects.create(project=run.job.project, messages=problem_messages(problem),
                                   source=f"problem:{problem.pk}", metadata=metadata)
    Problem.objects.filter(pk=problem.pk).update(prompt=prompt)
    problem.prompt = prompt
    return prompt


def math_shepherd_work(run: Run) -> None:
    """Math-Shepherd (Wang et al. 2024, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
    Annotations", arXiv:2312.08935), on the solutions (StepItems) of a steps project whose problem has a
    reference answer:

    1. for each step i but the last, k rollouts from the endpoint continue the solution's first i+1 steps
       to a final answer; the last step's "rollout" is the solution itself;
    2. each rollout is verified against the reference answer;
    3. the step's soft label is the share of correct rollouts, its hard label whether any is correct;
    4. the ratings (+1 / -1, by the job's estimate) are stored as the solution's automatic StepLabel next to
       people's labels, the shares in a SyntheticRow; where people labeled the solution, the hard labels'
       agreement with their per-step majority sign (neutral counted as good) is counted.
    """
    from annotate.models import StepItem, StepLabel
    from annotate.services import step_labels_store
    from prefdata.steps import step_majority
    from synth.verification import rollout_prompt, step_item_reference

    job, params = run.job, run.params
    items = StepItem.objects.filter(project=job.project, pk__lte=params.get("_upto_item", 0)).select_related("prompt")
    items = items.order_by("id")
    if params["max_items"]:
        items = items[: params["max_items"]]
    items = list(items)
    todo = [i for i in items if f"item:{i.pk}" not in run.done]
    total = len(items)
    k = params["n"]
    source_name = f"math-shepherd:{params['estimate']}:{job.endpoint.name}"[:200]
    done = total - len(todo)
    run.progress(done, total)
    for chunk in _chunks(todo, params["batch_size"]):
        run.check()
        counts: Counter = Counter()
        references = {item.pk: step_item_reference(item) for item in chunk}
        asks: list[tuple[int, int]] = []  # (item index, step index) of each conversation
        conversations: list[Conversation] = []
        for i, item in enumerate(chunk):
            if not references[item.pk] or not item.steps:
                counts["items_without_reference" if item.steps else "items_without_steps"] += 1
                continue
            for s in range(len(item.steps) - 1):
                asks.append((i, s))
                conversations.append(run.conversation([{"role": "user", "content": rollout_prompt(
                    problem=item.prompt.last_user_text, steps=item.steps[: s + 1])}]))
        replies = run.generate(conversations, n=k) if conversations else []
        rollouts: dict[tuple[int, int], list[dict]] = {}
        for (i, s), group in zip(asks, replies, strict=True):
            rollouts[(i, s)] = [_rollout_check(str(text), references[chunk[i].pk]) for text in group]
            counts["rollouts"] += len(group)
        labels: list[tuple[StepItem, dict] | None] = []
        for i, item in enumerate(chunk):
            reference = references[item.pk]
            if not reference or not item.steps:
                labels.append(None)
                continue
            last = _rollout_check("\n".join(item.steps), reference)
            per_step = [rollouts[(i, s)] for s in range(len(item.steps) - 1)] + [[last]]
            soft = [round(sum(r["correct"] for r in group) / len(group), 4) for group in per_step]
            hard = [1 if any(r["correct"] for r in group) else -1 for group in per_step]
            ratings = hard if params["estimate"] == "hard" else \
                [1 if share >= params["soft_threshold"] else -1 for share in soft]
            labels.append((item, {"reference": reference, "soft": soft, "hard": hard, "ratings": ratings,
                                  "rollouts": per_step}))
            counts["items_labeled"] += 1
            counts["steps_labeled"] += len(ratings)

        def write(labels=labels, counts=counts) -> None:
            for entry in labels:
                if entry is None:
                    continue
                item, found = entry
                label = step_labels_store(item=item, source=StepLabel.Source.AUTO, source_name=source_name,
                                          ratings=found["ratings"])
                people = [lab.ratings for lab in StepLabel.objects.filter(item=item, source=StepLabel.Source.HUMAN)
                          if len(lab.ratings) == len(item.steps)]
                agreement = None
                if people:
                    majority = step_majority(people)
                    pairs = [(h, m) for h, m in zip(found["hard"], majority, strict=True) if m is not None]
                    agreed = sum(1 for h, m in pairs if (h == 1) == (m != -1))
                    counts["agreement_steps"] += len(pairs)
                    counts["agreement_agreed"] += agreed
                    agreement = {"steps": len(pairs), "agreed": agreed}
                run.row_create(kind=SyntheticRow.Kind.STEPS, prompt=item.prompt, step_item=item, depth=1,
                               parents=[{"step_item": item.pk}],
                               meta={"item": item.pk, "label": label.pk, "source_name": source_name,
                                     "estimate": params["estimate"], "k": k, "agreement": agreement, **found})

        run.commit(Chunk([f"item:{i.pk}" for i in chunk], counts), write)
        done += len(chunk)
        run.progress(done, total)


def _rollout_check(text: str, reference: str) -> dict:
    from prefdata.verifiers.math import math_verify

    result = math_verify(response=text, reference=reference)
    return {"correct": result.correct, "extracted": result.extracted}


WORK: dict[str, Callable[[Run], None]] = {
    SynthesisJob.Kind.SAMPLING: sampling_work,
    SynthesisJob.Kind.BEST_OF_N: sampling_work,
    SynthesisJob.Kind.CONSTITUTIONAL: constitutional_work,
    SynthesisJob.Kind.EVOL_INSTRUCT: evol_instruct_work,
    SynthesisJob.Kind.SELF_INSTRUCT: self_instruct_work,
    SynthesisJob.Kind.MAGPIE: magpie_work,
    SynthesisJob.Kind.TRACES: traces_work,
    SynthesisJob.Kind.MATH_SHEPHERD: math_shepherd_work,
}


def pipeline_work(job: SynthesisJob, ctx: JobContext) -> None:
    """Run the job's kind, then measure what it made (diversity, the best-of-N curve) and finish."""
    run = Run(job, ctx)
    WORK[job.kind](run)
    with transaction.atomic():
        stats = dict(SynthesisJob.objects.select_for_update().get(pk=job.pk).stats or {})
        stats.update(job_measures(job=job))
        ctx.finish(stats=stats)


def job_measures(*, job: SynthesisJob) -> dict:
    """Diversity of what the job made (its new prompts, else its completions) and, for best-of-N, the curve
    of the mean best score against N with the KL bound."""
    prompts = SyntheticRow.objects.filter(job=job, kind=SyntheticRow.Kind.PROMPT).select_related("prompt")
    texts = [row.prompt.last_user_text for row in prompts[:DIVERSITY_TEXTS]]
    if not texts:
        texts = list(Generation.objects.filter(job=job).values_list("completion__text", flat=True)[:DIVERSITY_TEXTS])
    measures: dict = {"diversity": diversity(texts)}
    if job.kind == SynthesisJob.Kind.BEST_OF_N:
        scores = [row.meta.get("scores") or [] for row in SyntheticRow.objects.filter(job=job, kind="sft")]
        measures["best_of_n"] = best_of_n_curve(scores)
    if job.kind == SynthesisJob.Kind.TRACES:
        from synth.verification import pass_rates_mean

        stats = SynthesisJob.objects.filter(pk=job.pk).values_list("stats", flat=True).first() or {}
        measures["pass_at_k"] = pass_rates_mean(list((stats.get("pass_at_k_by_problem") or {}).values()))
    if job.kind == SynthesisJob.Kind.MATH_SHEPHERD:
        counts = (SynthesisJob.objects.filter(pk=job.pk).values_list("stats", flat=True).first() or {}).get(
            "counts") or {}
        steps, agreed = counts.get("agreement_steps", 0), counts.get("agreement_agreed", 0)
        measures["agreement"] = {"steps": steps, "agreed": agreed,
                                 "share": round(agreed / steps, 4) if steps else None}
    measures["rows"] = dict(Counter(SyntheticRow.objects.filter(job=job).values_list("kind", flat=True)))
    return measures
