"""Judge pairs with a model, in both presentation orders, and store the debiased verdicts."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Sum, TextField
from django.db.models.functions import Cast, Length

from annotate.job_lifecycle import REQUEUE, JobContext, job_cancel, job_queue, job_run
from annotate.jobs import JobStatus
from annotate.models import PairItem, Project, StepItem, StepLabel
from annotate.roles import job_start_permission, permission_require
from annotate.services import pair_items_prioritize, step_labels_store
from judges.models import (
    DEFAULT_QUESTION,
    MODE_TEMPLATES,
    UNPARSED_EXAMPLE_CHARS,
    UNPARSED_EXAMPLES,
    AIJudgment,
    Judge,
    JudgeRun,
    template_check,
)
from synth.backends.base import Backend, Sampling
from synth.models import Constitution
from synth.secrets import api_key_decrypt, base_url_check
from synth.services import DatabaseResponseCache, Spending, endpoint_backend, endpoint_cost, endpoint_use_check

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(conversation|response_a|response_b|response|question)\}")


def conversation_render(messages: Sequence[dict]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def judge_prompt(*, template: str, conversation: Sequence[dict], first: str, second: str = "",
                 question: str = DEFAULT_QUESTION) -> list[dict]:
    """The judge's chat input. One pass over the template, so text inside a response that looks
    like a placeholder is never substituted. Pointwise templates use {response} (= ``first``)."""
    values = {"conversation": conversation_render(conversation), "response_a": first, "response_b": second,
              "response": first, "question": question}
    return [{"role": "user", "content": _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)}]


# What judges write (tests/judges/test_verdict_parse.py holds real answers of the demo model). A side is named
# as shown: a capital letter alone, a noun and a letter or number ("Response (b)", "Output 2": 1 is A), or
# "the first / second (response)". Every repetition is bounded, so that reading stays linear in the text.
_NOUN = r"(?i:response|output|answer|assistant|option|candidate|completion|model|reply)s?"
_SIDE = (rf"(?:\b{_NOUN}\s{{0,3}}(?:[AB]\b|\(\s?[ABab12]\s?\)|\[\s?[ABab12]\s?\]|[12]\b)"
         r"|(?<![\w'’])\(?[AB]\)?(?![\w'’])"
         r"|\b(?i:the\s{1,3})?(?i:first|former|second|latter)(?:\s{1,3}(?i:response|one|answer|output|option)\b)?)")
_Q = r"[*\"'“”`]{0,3}"  # bold or quotes around a side
# Both sides at once ("A or B", "Response A and Response B", "A/B") name neither: blanked before reading.
_BOTH_SIDES = re.compile(rf"{_SIDE}{_Q}\s{{0,3}}(?:/|&|(?i:or|and|nor|vs\.?|versus)\b)\s{{0,3}}{_Q}{_SIDE}")
_S = rf"{_Q}(?P<side>{_SIDE}){_Q}"
_ADV = (r"(?:(?i:clearly|definitely|obviously|indeed|much|slightly|somewhat|far|significantly|overall|also|still|"
        r"actually|generally|the|a|an|my|final|is|would\s{1,3}be)\s{1,3}){0,4}")
_BETTER = (r"(?i:better|best|preferred|preferable|superior|stronger|winner|correct|right|more\s{1,3}(?:helpful|"
           r"accurate|correct|relevant|complete|informative|detailed|appropriate|coherent|clear|concise|engaging|"
           r"creative|harmless))")
_WORSE = (r"(?i:worse|worst|inferior|weaker|incorrect|wrong|less\s{1,3}(?:helpful|accurate|correct|relevant|"
          r"complete|informative|detailed|appropriate|coherent|clear))")
_COPULA = r"(?i:is|was|seems(?:\s{1,3}to\s{1,3}be)?|appears(?:\s{1,3}to\s{1,3}be)?|would\s{1,3}be|looks|remains)"
_THEN = rf"\s{{0,3}}(?:{_COPULA}(?:\s{{0,3}}[:=\-])?|[:=\-])\s{{0,3}}"  # "is", "would be:", ":"
# Explicit verdicts, as (what the side means, pattern): the side named, the other one ("A is worse"), or a tie.
_EXPLICIT = [
    ("side", re.compile(r"\[\[\s?(?P<side>[AB12]|C|(?i:tie))\s?\]\]")),  # MT-Bench: [[A]], [[B]], [[C]] (a tie)
    ("side", re.compile(rf"{_S}\s{{0,3}}{_COPULA}\s{{1,3}}{_ADV}{_BETTER}\b")),  # A is better; Output (2) is correct
    ("other", re.compile(rf"{_S}\s{{0,3}}{_COPULA}\s{{1,3}}{_ADV}{_WORSE}\b")),  # B is incorrect
    ("side", re.compile(rf"\b(?:{_BETTER}|(?i:winning))(?:\s{{1,3}}{_NOUN}|\s{{1,3}}(?i:one|choice))?{_THEN}{_ADV}"
                        rf"{_S}")),  # the better response is B; Best: A
    ("side", re.compile(rf"\b(?i:verdict|answer|choice|decision|pick|preference|conclusion|selection|judge?ment)"
                        rf"{_THEN}{_ADV}{_S}")),  # Final verdict: A; the answer is **B**
    ("side", re.compile(rf"\b(?i:choose|chose|pick|prefer|select|go\s{{1,3}}with|vote\s{{1,3}}for|recommend|suggest|"
                        rf"favou?r|(?:would|'d)\s{{1,3}}say|answer\s{{1,3}}with)\s{{1,3}}{_ADV}{_S}")),  # I prefer B
    ("tie", re.compile(r"\b(?i:tie|tied)\b"
                       r"|\b(?i:neither)\b(?=\s{0,3}(?:[.!,;:\n]|$|(?i:response|answer|output|option|one|of|is|are)\b))"
                       r"|\b(?i:both)\b(?:\s{1,3}(?i:responses|answers|outputs|options|of\s{1,3}them|are|were|seem|"
                       r"look)){0,3}\s{1,3}(?i:equally|similarly|just\s{1,3}as|about\s{1,3}as|the\s{1,3}same|"
                       r"as\s{1,3}good|as\s{1,3}bad|bad|wrong|incorrect|unhelpful|poor)\b"
                       r"|\b(?i:equally\s{1,3}(?:good|bad|helpful|unhelpful|valid|correct|incorrect|poor|strong|weak))\b"
                       r"|\b(?i:no\s{1,3}(?:clear\s{1,3})?(?:winner|difference|preference))\b")),
]
# Weaker signs, read only when there is no explicit verdict: the answer starts with a side ("A.", "B\n...",
# "Assistant A", "A: because ..."; not "Response A: <its text>"), or every bold side is the same one.
_START = re.compile(rf"\A\s*[#*\"'“`(\[]{{0,4}}\s{{0,3}}(?:(?P<side>{_SIDE})[*\"'”`)\]]{{0,4}}\s{{0,3}}(?:[.!\n]|\Z)"
                    rf"|(?P<letter>[AB])[*\"'”`)\]]{{0,4}}\s{{0,3}}:)")
_BOLD = re.compile(rf"\*\*\s{{0,3}}(?P<side>{_SIDE})\s{{0,3}}[.!]?\s{{0,3}}\*\*(?!\s{{0,3}}:)")
_OTHER = {"first": "second", "second": "first", "tie": "tie"}


def _side(phrase: str) -> str:
    """"first", "second" or "tie" for a side as matched ("Response (b)", "Output 1", "the latter", "C")."""
    low = phrase.lower()
    if "first" in low or "former" in low:
        return "first"
    if "second" in low or "latter" in low:
        return "second"
    marks = [c for c in phrase.upper() if c in "AB12C"]
    return {"A": "first", "1": "first", "B": "second", "2": "second"}.get(marks[-1] if marks else "", "tie")


def verdict_parse(text: str) -> str | None:
    """The verdict in a judge's free text about the responses as shown: "first", "second", "tie" (a tie,
    "neither", "both are equally good"), or None when it names none clearly.

    1. Explicit verdicts ("A is better", "[[B]]", "the answer is Output (2)", "I prefer Response B", "B is
       worse", a tie): the last one wins, as models restate the question or hesitate before answering.
    2. Else an answer that is, or starts with, a side ("B.", "A\n\nBecause ...", "Assistant A", "A: ...").
    3. Else the side every bold mark names ("**A**"); mere mentions of a side decide nothing.
    "A or B" and the like are blanked first: they name no side. Pure, and linear in the text: tens of
    microseconds for a short answer, about a millisecond for 20 kB.
    """
    text = _BOTH_SIDES.sub(lambda m: " " * len(m.group()), text)
    found = []  # (where, verdict)
    for meaning, pattern in _EXPLICIT:
        for m in pattern.finditer(text):
            if meaning == "tie":
                found.append((m.start(), "tie"))
            else:
                side = _side(m.group("side"))
                found.append((m.start(), _OTHER[side] if meaning == "other" else side))
    if found:
        return max(found)[1]
    bare = text.strip().strip(".*()[]: ").upper()  # also a lower-case letter alone: "b."
    if bare in ("A", "B"):
        return "first" if bare == "A" else "second"
    if start := _START.match(text):
        return _side(start.group("side") or start.group("letter"))
    sides = {_side(m.group("side")) for m in _BOLD.finditer(text)}
    return sides.pop() if len(sides) == 1 else None


def _two_way(logp_a: float, logp_b: float) -> float:
    """P(A) from the log-probabilities of "A" and "B", renormalized over the two answers."""
    if logp_a == logp_b:  # also covers both -inf
        return 0.5
    top = max(logp_a, logp_b)
    ea, eb = math.exp(logp_a - top), math.exp(logp_b - top)
    return ea / (ea + eb)


@dataclass(frozen=True)
class PromptResult:
    """One rendered prompt's answer: P(first shown is better) and each sample's vote."""

    prob_first: float
    votes: tuple[str, ...]  # "first", "second", "tie" or "none" (unparsed) per sample (generate method)
    raw: str


@dataclass
class ParseTally:
    """Generated answers read, and those no verdict, score or yes/no was found in (each counted as a tie):
    a judge run adds each batch's to its row and shows a few."""

    answers: int = 0
    unparsed: list[str] = field(default_factory=list)

    def add(self, text: str, *, parsed: bool) -> None:
        self.answers += 1
        if not parsed:
            self.unparsed.append(text)


def judge_prompts(*, judge: Judge, backend: Backend, conversations: Sequence[list[dict]],
                  tally: ParseTally | None = None) -> list[PromptResult]:
    """Judge many rendered pairwise prompts in one batched call.

    Log-probabilities: one forward pass, P = p(A) / (p(A) + p(B)), no sampling. Generate: ``votes``
    samples per prompt (self-consistency, Wang et al. 2022, arXiv:2203.11171), each parsed; P is
    the share of samples voting for the first response (a tie, or an unparsed sample, counts half).
    ``tally`` (if given) counts the answers read and keeps those with no verdict.
    """
    if not conversations:
        return []
    if judge.verdict_method == Judge.VerdictMethod.LOGPROB:
        scores = backend.score(list(conversations), [["A", "B"]] * len(conversations))
        return [PromptResult(prob_first=_two_way(a, b), votes=(), raw=f"logp(A)={a:.4f} logp(B)={b:.4f}")
                for a, b in scores]
    k = max(1, judge.votes)
    temperature = judge.temperature if k > 1 else 0.0
    texts = backend.generate(list(conversations), Sampling(max_new_tokens=judge.max_new_tokens, n=k,
                                                           temperature=temperature))
    results = []
    for samples in texts:
        votes = tuple(verdict_parse(t) or "none" for t in samples)
        if tally is not None:
            for text, vote in zip(samples, votes, strict=True):
                tally.add(text, parsed=vote != "none")
        share = sum(1.0 if v == "first" else 0.0 if v == "second" else 0.5 for v in votes) / len(votes)
        results.append(PromptResult(prob_first=share, votes=votes, raw="\n----\n".join(samples)))
    return results


_SCORE = re.compile(r"\b(10|[1-9])\b")


def score_parse(text: str) -> float | None:
    """The 1-10 score in a judge's answer: the last "[[n]]" or "Rating: n", else the first number."""
    for pattern in (r"\[\[\s*(10|[1-9])\s*\]\]", r"(?:rating|score)\s*[:=]?\s*(10|[1-9])\b"):
        found = re.findall(pattern, text, re.IGNORECASE)
        if found:
            return float(found[-1])
    found = _SCORE.search(text)
    return float(found.group(1)) if found else None


def judge_scores(*, judge: Judge, backend: Backend, conversations: Sequence[list[dict]],
                 tally: ParseTally | None = None) -> list[tuple[float, str]]:
    """Pointwise: the expected 1-10 score of each response (log-probabilities) or the mean parsed score
    (5.5 when no sample has one; ``tally`` counts the answers and keeps those with no score)."""
    if not conversations:
        return []
    if judge.verdict_method == Judge.VerdictMethod.LOGPROB:
        labels = [str(i) for i in range(1, 11)]
        rows = backend.score(list(conversations), [labels] * len(conversations))
        out = []
        for row in rows:
            top = max(row)
            weights = [math.exp(v - top) for v in row]
            total = sum(weights)
            out.append((sum(w * (i + 1) for i, w in enumerate(weights)) / total, f"logp={[round(v, 3) for v in row]}"))
        return out
    k = max(1, judge.votes)
    texts = backend.generate(list(conversations), Sampling(max_new_tokens=judge.max_new_tokens, n=k,
                                                           temperature=judge.temperature if k > 1 else 0.0))
    out = []
    for samples in texts:
        read = [score_parse(t) for t in samples]
        if tally is not None:
            for text, value in zip(samples, read, strict=True):
                tally.add(text, parsed=value is not None)
        parsed = [v for v in read if v is not None]
        out.append((sum(parsed) / len(parsed) if parsed else 5.5, "\n----\n".join(samples)))
    return out


def _verdict(prob_a: float) -> str:
    return "A" if prob_a > 0.5 else "B" if prob_a < 0.5 else "tie"


def judgment_combine(*, debiasing: str, prob_a_ab: float, prob_a_ba: float | None) -> tuple[str, float]:
    """Final (verdict, P(A better)) from the two orders, per the judge's debiasing mode."""
    if debiasing == Judge.Debiasing.NONE or prob_a_ba is None:
        return _verdict(prob_a_ab), prob_a_ab
    if debiasing == Judge.Debiasing.SWAP:
        v_ab, v_ba = _verdict(prob_a_ab), _verdict(prob_a_ba)
        # MT-Bench: a judge that changes its answer with the order has no preference.
        return (v_ab, (prob_a_ab + prob_a_ba) / 2) if v_ab == v_ba else ("tie", 0.5)
    average = (prob_a_ab + prob_a_ba) / 2
    return _verdict(average), average


def step_prompt(*, template: str, conversation: Sequence[dict], steps: Sequence[str], index: int) -> list[dict]:
    """The judge's input for step ``index`` (0-based): the problem and the steps up to it."""
    shown = "\n".join(f"Step {i + 1}: {text}" for i, text in enumerate(steps[: index + 1]))
    values = {"conversation": conversation_render(conversation), "steps": shown, "number": str(index + 1),
              "step": steps[index]}
    return [{"role": "user", "content": _STEP_PLACEHOLDER.sub(lambda m: values[m.group(1)], template)}]


_STEP_PLACEHOLDER = re.compile(r"\{(conversation|steps|number|step)\}")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def step_items_judge(*, judge: Judge, items: Sequence[StepItem], backend: Backend | None = None,
                     tally: ParseTally | None = None) -> list[StepLabel]:
    """Rate every step of each solution (+1 when the judge says the step is correct, -1 otherwise)
    and store the ratings as one AI label per solution, named after the judge and its version. An answer
    with neither yes nor no counts half (``tally`` counts the answers and keeps those)."""
    backend = backend or endpoint_backend(endpoint=judge.endpoint)
    template = judge.active_template
    prompts, index = [], []
    for item in items:
        for i in range(len(item.steps)):
            prompts.append(step_prompt(template=template, conversation=item.prompt.messages, steps=item.steps,
                                       index=i))
            index.append((item.pk, i))
    if judge.verdict_method == Judge.VerdictMethod.LOGPROB:
        probs = [_two_way(yes, no) for yes, no in backend.score(prompts, [["Yes", "No"]] * len(prompts))]
    else:
        k = max(1, judge.votes)
        texts = backend.generate(prompts, Sampling(max_new_tokens=judge.max_new_tokens, n=k,
                                                   temperature=judge.temperature if k > 1 else 0.0))
        probs = []
        for samples in texts:
            votes = [(found[-1].lower() == "yes") if (found := _YES_NO.findall(t)) else None for t in samples]
            if tally is not None:
                for text, vote in zip(samples, votes, strict=True):
                    tally.add(text, parsed=vote is not None)
            probs.append(sum(1.0 if v else 0.5 if v is None else 0.0 for v in votes) / len(votes))
    ratings: dict[int, list] = {item.pk: [None] * len(item.steps) for item in items}
    for (item_id, i), p in zip(index, probs, strict=True):
        ratings[item_id][i] = 1 if p > 0.5 else -1 if p < 0.5 else 0
    return [step_labels_store(item=item, source=StepLabel.Source.AI, source_name=judge_source_name(judge=judge),
                              ratings=ratings[item.pk]) for item in items]


def judge_source_name(*, judge: Judge) -> str:
    return f"{judge.name} v{judge.template_version}"


def judge_questions(*, judge: Judge) -> list[tuple[str, str]]:
    """(principle name, comparison question) pairs: the constitution's, or the default question."""
    if judge.constitution_id:
        principles = list(judge.constitution.principles.all())
        if principles:
            return [(p.name, p.comparison_question) for p in principles]
    return [("", DEFAULT_QUESTION)]


def _principles_for(judge: Judge, item: PairItem, questions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if judge.principle_use == Judge.PrincipleUse.ALL or len(questions) == 1:
        return questions
    # Sampled, but reproducibly: the same judge version picks the same principle for an item.
    digest = hashlib.sha256(f"{judge.pk}:{judge.template_version}:{item.pk}".encode()).digest()
    return [questions[int.from_bytes(digest[:4], "big") % len(questions)]]


def _usage(backend: Backend) -> tuple[int, int]:
    usage = getattr(backend, "usage", None)
    return (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)


def _tokens_per_item(backend: Backend, plan: list, n_prompts: int, after: tuple[int, int],
                     before: tuple[int, int]) -> list[tuple[int, int]]:
    """The tokens paid for each item's prompts: from each response's own usage where the backend reports it
    per prompt (``last_usage``: HTTP servers; an answer from the cache cost nothing), else the batch's
    total shared evenly."""
    per_prompt = getattr(backend, "last_usage", None)
    if isinstance(per_prompt, list) and len(per_prompt) == n_prompts:
        return [(sum(per_prompt[i][0] for slot in slots for i in slot if i is not None),
                 sum(per_prompt[i][1] for slot in slots for i in slot if i is not None)) for _, slots in plan]
    share = max(len(plan), 1)
    return [((after[0] - before[0]) // share, (after[1] - before[1]) // share)] * len(plan)


def items_judge(*, judge: Judge, items: Sequence[PairItem], run: JudgeRun | None = None,
                backend: Backend | None = None, tally: ParseTally | None = None) -> list[AIJudgment]:
    """Judge a batch of pairs and store one judgment per (judge version, item); idempotent.

    Every prompt of the batch (each item x principle x order) goes to the backend in one call. ``tally``
    counts the generated answers read and keeps those with no verdict or score.
    """
    evaluated = items_evaluate(judge=judge, items=items, backend=backend, tally=tally)
    stored = []
    with transaction.atomic():
        for item, fields in zip(items, evaluated, strict=True):
            judgment, _ = AIJudgment.objects.get_or_create(
                judge=judge, template_version=judge.template_version, item=item, defaults={"run": run, **fields})
            stored.append(judgment)
    return stored


def items_evaluate(*, judge: Judge, items: Sequence[PairItem], backend: Backend | None = None,
                   tally: ParseTally | None = None) -> list[dict]:
    """What ``items_judge`` stores for each pair (the fields of its AIJudgment, without judge, item and run),
    computed and not stored: ``judge`` may be unsaved (a test of a judge being edited)."""
    backend = backend or endpoint_backend(endpoint=judge.endpoint)
    template = judge.active_template
    questions = judge_questions(judge=judge)
    both = judge.debiasing != Judge.Debiasing.NONE
    pointwise = judge.mode == Judge.Mode.POINTWISE
    plan = []  # per item: (principle names, [(prompt index AB, prompt index BA | None)])
    prompts: list[list[dict]] = []
    for item in items:
        conv, a, b = item.prompt.messages, item.completion_a.text, item.completion_b.text
        chosen = _principles_for(judge, item, questions)
        slots = []
        for _, question in chosen:
            if pointwise:
                prompts.append(judge_prompt(template=template, conversation=conv, first=a, question=question))
                prompts.append(judge_prompt(template=template, conversation=conv, first=b, question=question))
                slots.append((len(prompts) - 2, len(prompts) - 1))
                continue
            prompts.append(judge_prompt(template=template, conversation=conv, first=a, second=b,
                                        question=question))
            ab = len(prompts) - 1
            ba = None
            if both:
                prompts.append(judge_prompt(template=template, conversation=conv, first=b, second=a,
                                            question=question))
                ba = len(prompts) - 1
            slots.append((ab, ba))
        plan.append(([name for name, _ in chosen if name], slots))
    tokens_before = _usage(backend)
    if pointwise:
        scores = judge_scores(judge=judge, backend=backend, conversations=prompts, tally=tally)
    else:
        results = judge_prompts(judge=judge, backend=backend, conversations=prompts, tally=tally)
    item_tokens = _tokens_per_item(backend, plan, len(prompts), _usage(backend), tokens_before)
    constitution_version = judge.constitution.version if judge.constitution_id else None
    evaluated = []
    for (principles, slots), (prompt_tokens, completion_tokens) in zip(plan, item_tokens, strict=True):
        cost = endpoint_cost(endpoint=judge.endpoint, prompt_tokens=prompt_tokens,
                             completion_tokens=completion_tokens)
        fields: dict = {"constitution_version": constitution_version, "principles": principles,
                        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cost": cost}
        if pointwise:
            score_a = sum(scores[i][0] for i, _ in slots) / len(slots)
            score_b = sum(scores[j][0] for _, j in slots) / len(slots)
            probability = 1 / (1 + math.exp(-(score_a - score_b)))
            fields.update(score_a=score_a, score_b=score_b, prob_a_ab=probability, verdict_ab=_verdict(probability),
                          verdict=_verdict(probability), probability=probability,
                          raw_ab="\n====\n".join(scores[i][1] + "\n~~~~\n" + scores[j][1] for i, j in slots))
        else:
            prob_a_ab = sum(results[i].prob_first for i, _ in slots) / len(slots)
            prob_a_ba = (sum(1.0 - results[j].prob_first for _, j in slots) / len(slots)) if both else None
            verdict, probability = judgment_combine(debiasing=judge.debiasing, prob_a_ab=prob_a_ab,
                                                    prob_a_ba=prob_a_ba)
            # Votes about the stored A and B: "first" in the BA order is B ("tie" and "none" stay).
            votes = [{"first": "A", "second": "B"}.get(v, v) for i, _ in slots for v in results[i].votes]
            if both:
                votes += [{"first": "B", "second": "A"}.get(v, v) for _, j in slots for v in results[j].votes]
            fields.update(
                verdict_ab=_verdict(prob_a_ab), verdict_ba=_verdict(prob_a_ba) if prob_a_ba is not None else "",
                prob_a_ab=prob_a_ab, prob_a_ba=prob_a_ba, verdict=verdict, probability=probability, votes=votes,
                vote_share=(sum(v == verdict for v in votes) / len(votes)) if votes else None,
                raw_ab="\n====\n".join(results[i].raw for i, _ in slots)[:20000],
                raw_ba="\n====\n".join(results[j].raw for _, j in slots if j is not None)[:20000])
        evaluated.append(fields)
    return evaluated


def disputed_items_prioritize(*, project: Project) -> int:
    """Route to people first the pairs AI judges are unsure of: priority 2 when judges disagree
    with each other, 1 when a judge changed its verdict with the order, 0 otherwise."""
    verdicts: dict[int, set[str]] = {}
    flipped: set[int] = set()
    for item_id, verdict, ab, ba in AIJudgment.objects.filter(item__project=project).values_list(
            "item_id", "verdict", "verdict_ab", "verdict_ba"):
        verdicts.setdefault(item_id, set()).add(verdict)
        if ab and ba and ab != ba:
            flipped.add(item_id)
    priorities = {item_id: 2 if len(seen) > 1 else 1 if item_id in flipped else 0
                  for item_id, seen in verdicts.items()}
    return pair_items_prioritize(project=project, priorities=priorities)


# What a judge of each mode judges: pairs (a preference, or a score of each response) or step solutions.
MODE_TASK_KINDS = {Judge.Mode.PAIRWISE: Project.TaskKind.PAIRWISE, Judge.Mode.POINTWISE: Project.TaskKind.PAIRWISE,
                   Judge.Mode.STEPS: Project.TaskKind.STEPS}


def judge_project_check(*, judge: Judge, project: Project) -> None:
    """ValidationError naming the judge when its mode does not fit the project's task kind."""
    kind = MODE_TASK_KINDS.get(judge.mode)
    if kind != project.task_kind:
        modes = [mode for mode, task_kind in MODE_TASK_KINDS.items() if task_kind == project.task_kind]
        raise ValidationError({"judge": f"{judge.name} is a {judge.mode} judge: it judges {kind} projects, and "
                                        f"this project is a {project.task_kind} one (its judges are of mode "
                                        f"{' or '.join(modes)})"})


def judge_run_create(*, judge: Judge, project: Project, start: bool = True,
                     user: AbstractBaseUser | None = None) -> JudgeRun:
    """A run of ``judge`` over ``project``, queued unless ``start`` is False. With ``user`` (a person asking,
    not the platform), they need the researcher's permission and the judge's endpoint must be open to them
    and the project."""
    if user is not None:
        permission_require(user=user, permission=job_start_permission(JudgeRun), doing="start judge runs")
    judge_project_check(judge=judge, project=project)
    if error := judge.endpoint_mismatch():
        raise ValidationError({"judge": f"{judge.name}: {error}"})
    endpoint_use_check(endpoint=judge.endpoint, project=project, user=user)
    run = JudgeRun.objects.create(judge=judge, project=project, created_by=user)
    if start:
        job_queue(run)
    return run


def judge_run_execute(*, run_id: int, batch_size: int = 8, chunk_size: int | None = None) -> JudgeRun | None:
    """Judge the items of the run's project that this judge version has not judged yet, under the run's
    lease.

    With ``chunk_size``, stop after that many items and go back to the queue for the next chunk (a long
    run interleaves with other work on the worker). Resumable: what is judged is skipped, so a run
    resumed after its worker stopped, or retried, goes on where it was. ``total`` is what was left to
    judge when the run began, and ``progress`` how much of it is judged, by this run or any other.
    A cancelled run stops at the next batch.
    """
    return job_run(model=JudgeRun, job_id=run_id, related=("judge__endpoint", "judge__constitution", "project"),
                   work=lambda run, ctx: _judge_run_chunk(run, ctx, batch_size=batch_size, chunk_size=chunk_size))


def _judge_run_chunk(run: JudgeRun, ctx: JobContext, *, batch_size: int, chunk_size: int | None) -> object:
    judge = run.judge
    judge_version_sync(judge=judge)  # a constitution that moved on: judge again under a new version
    steps = run.project.task_kind == Project.TaskKind.STEPS
    if steps:
        mine = StepLabel.objects.filter(source=StepLabel.Source.AI, source_name=judge_source_name(judge=judge))
        pending = (StepItem.objects.filter(project=run.project).select_related("prompt")
                   .exclude(Exists(mine.filter(item=OuterRef("pk")))).order_by("id"))
    else:
        judged = AIJudgment.objects.filter(judge=judge, template_version=judge.template_version, item=OuterRef("pk"))
        pending = (PairItem.objects.filter(project=run.project).select_related("prompt", "completion_a", "completion_b")
                   .exclude(Exists(judged)).order_by("id"))
    remaining = pending.count()
    if not (run.total or run.progress):
        total = remaining  # the run's first turn: what is left to judge now
    else:
        total = max(run.total, run.progress + remaining)  # items added since then count too
    done = total - remaining
    ctx.progress(done, total)
    todo = list(pending[:chunk_size] if chunk_size else pending)
    backend = endpoint_backend(endpoint=judge.endpoint)
    spending = Spending(endpoint=judge.endpoint, backend=backend, spent=run.cost)
    for start in range(0, len(todo), batch_size):
        ctx.check()
        spending.check()
        batch = todo[start : start + batch_size]
        tally = ParseTally()
        if steps:
            step_items_judge(judge=judge, items=batch, backend=backend, tally=tally)
        else:
            items_judge(judge=judge, items=batch, run=run, backend=backend, tally=tally)
        _run_tally_add(run, tally)
        JudgeRun.objects.filter(pk=run.pk).update(cost=spending.batch_done())
        done += len(batch)
        ctx.progress(done, total)
    if len(todo) < remaining:
        return REQUEUE  # more to do: the next chunk is another turn
    if run.project.prioritize_disagreements and not steps:
        disputed_items_prioritize(project=run.project)
    return None


def unparsed_example(text: str) -> str:
    """An unparsed answer as a run keeps it: its start and its end (where a verdict usually is)."""
    text = text.strip()
    if len(text) <= UNPARSED_EXAMPLE_CHARS:
        return text
    half = (UNPARSED_EXAMPLE_CHARS - 3) // 2
    return f"{text[:half].rstrip()} … {text[-half:].lstrip()}"


def _run_tally_add(run: JudgeRun, tally: ParseTally) -> None:
    """Add a batch's answers and unparsed answers to the run, and keep a few of those (the run's worker holds
    its lease: nobody else writes the examples)."""
    if not tally.answers:
        return
    updates: dict = {"answers": F("answers") + tally.answers, "unparsed": F("unparsed") + len(tally.unparsed)}
    examples = list(run.unparsed_examples)
    for text in tally.unparsed:
        if len(examples) >= UNPARSED_EXAMPLES:
            break
        if (example := unparsed_example(text)) not in examples:
            examples.append(example)
    if examples != run.unparsed_examples:
        run.unparsed_examples = updates["unparsed_examples"] = examples
    JudgeRun.objects.filter(pk=run.pk).update(**updates)


def judge_run_cancel(*, run: JudgeRun) -> JudgeRun:
    """Stop a queued or running run at its next batch; what it judged is kept."""
    return job_cancel(job=run)


def _constitution_version(judge: Judge) -> int | None:
    if not judge.constitution_id:
        return None
    return Constitution.objects.filter(pk=judge.constitution_id).values_list("version", flat=True).first()


def _constitution_moved_on(judge: Judge, current: int | None) -> bool:
    """The constitution's version is not the one the judge's template version was made with."""
    known = judge.constitution_version
    if known is None and current is not None and judge.pk is not None:
        # Made without recording it (in code, not the admin): its judgments so far tell, if any.
        known = (AIJudgment.objects.filter(judge=judge, template_version=judge.template_version)
                 .values_list("constitution_version", flat=True).first())
        return known is not None and known != current
    return known != current


def judge_version_bump_if_changed(*, judge: Judge) -> bool:
    """Raise the template version (before saving ``judge``) when what it does has changed: a versioned
    field, the template of its mode (not the other two), or its constitution's version. A new judge
    records the version of its constitution."""
    current = _constitution_version(judge)
    if judge.pk is None:
        judge.constitution_version = current
        return False
    fields = (*Judge.VERSIONED_FIELDS, judge.active_template_field)
    stored = Judge.objects.filter(pk=judge.pk).values(*fields).first()
    if stored is None:
        return False
    changed = any(stored[f] != getattr(judge, f) for f in fields)
    if stored["constitution_id"] == judge.constitution_id:
        changed = changed or _constitution_moved_on(judge, current)
    judge.constitution_version = current
    if changed:
        judge.template_version += 1
    return changed


def judge_version_sync(*, judge: Judge) -> bool:
    """Bring the judge up to date with its constitution: when the constitution's principles changed since
    the judge's template version was set, raise the template version, so that the judge judges again (its
    earlier judgments stay, under the old version). True when it did.

    Synth raises the constitution's version and knows nothing of judges; the judge remembers the version
    its template version was made with (``constitution_version``) and notices here, at the start of a
    run's work, and in the admin (``judge_version_bump_if_changed``).
    """
    current = _constitution_version(judge)
    known = judge.constitution_version
    if known == current:
        return False
    bump = _constitution_moved_on(judge, current)
    updates: dict = {"constitution_version": current}
    if bump:
        updates["template_version"] = F("template_version") + 1
    # Conditional, so that two runs starting together raise the version once.
    updated = Judge.objects.filter(pk=judge.pk, constitution_version=known).update(**updates)
    judge.refresh_from_db(fields=["template_version", "constitution_version"])
    if current is not None and Judge.constitution.is_cached(judge):
        judge.constitution.version = current  # what items_judge records on each judgment
    return bump and updated == 1


# --- Judges edited in the app: checks, a preview of the prompt, a test on one pair, an estimate of a run ---------

# Limits of what a judge may ask for, in the app and the API.
VOTES_MAX = 32
TEMPERATURE_MAX = 2.0
MAX_NEW_TOKENS_MAX = 8192
TEMPLATE_MAX_LENGTH = 20000
# A test on one pair waits at most this long for each answer, and tries once (a run retries).
JUDGE_TEST_TIMEOUT_S = 30.0
# Tokens from characters, before a tokenizer is at hand: about four characters a token for English text with
# the BPE vocabularies of current models (OpenAI's rule of thumb); an estimate, said to be one.
CHARS_PER_TOKEN = 4


def judge_problems(*, judge: Judge, template: str | None = None) -> dict[str, str]:
    """What is wrong with ``judge`` (saved or not) as configured, by field: a name taken, a template that
    misses a placeholder of its mode or has an unknown one (``template``: the active template, as the form
    and the API name it), an endpoint that cannot serve its verdict method, votes that cannot differ."""
    problems: dict[str, str] = {}
    if judge.name and Judge.objects.filter(name=judge.name).exclude(pk=judge.pk).exists():
        problems["name"] = "A judge with this name exists already."
    spec = MODE_TEMPLATES.get(judge.mode)
    if spec is not None:
        if error := template_check(template if template is not None else judge.active_template, spec=spec):
            problems["template"] = error
    if judge.endpoint_id and (error := judge.endpoint_mismatch()):
        problems["verdict_method"] = error[0].upper() + error[1:] + "."
    if judge.votes > 1 and judge.verdict_method == Judge.VerdictMethod.LOGPROB:
        problems["votes"] = ("A log-probability judge reads one forward pass: votes apply to the generate "
                             "method. Set 1, or choose generate.")
    elif judge.votes > 1 and judge.temperature <= 0:
        problems["temperature"] = "Several votes need a temperature above 0, else every sample is the same."
    return problems


@transaction.atomic
def judge_save(*, judge: Judge, user: AbstractBaseUser, template: str | None = None) -> Judge:
    """Create or change a judge from the app or the API: the researcher's permission, the checks of
    ``judge_problems`` (a ValidationError by field), then a new template version when what it does changed
    (its earlier judgments are kept under the old one)."""
    adding = judge.pk is None
    permission_require(user=user, permission="judges.add_judge" if adding else "judges.change_judge",
                       doing="create judges" if adding else "change judges")
    if template is not None:
        setattr(judge, judge.active_template_field, template)
    if problems := judge_problems(judge=judge):
        raise ValidationError(problems)
    judge_version_bump_if_changed(judge=judge)
    judge.save()
    return judge


def judge_preview(*, judge: Judge, item: PairItem | StepItem) -> list[dict]:
    """The prompts ``judge`` (saved or not) sends for ``item``, as text: both orders of a pairwise judge
    that swaps, each response of a pointwise one, the last step of a solution. With a constitution, the
    first principle's question."""
    template = judge.active_template
    conversation = item.prompt.messages
    question = judge_questions(judge=judge)[0][1]
    if judge.mode == Judge.Mode.STEPS:
        steps = list(getattr(item, "steps", []) or [""])
        prompt = step_prompt(template=template, conversation=conversation, steps=steps, index=len(steps) - 1)
        return [{"order": f"step {len(steps)}", "text": prompt[0]["content"]}]
    a, b = item.completion_a.text, item.completion_b.text
    if judge.mode == Judge.Mode.POINTWISE:
        return [{"order": "response A", "text": judge_prompt(template=template, conversation=conversation, first=a,
                                                             question=question)[0]["content"]},
                {"order": "response B", "text": judge_prompt(template=template, conversation=conversation, first=b,
                                                             question=question)[0]["content"]}]
    shown = [{"order": "A first", "text": judge_prompt(template=template, conversation=conversation, first=a,
                                                       second=b, question=question)[0]["content"]}]
    if judge.debiasing != Judge.Debiasing.NONE:
        shown.append({"order": "B first", "text": judge_prompt(template=template, conversation=conversation,
                                                               first=b, second=a, question=question)[0]["content"]})
    return shown


class JudgeTestError(Exception):
    """A test on one pair failed: one line, safe to show (never the key)."""


@dataclass(frozen=True)
class JudgeTest:
    """A judge's answer on one pair, computed and not stored: what each order said and the combination."""

    item_id: int
    orders: list[dict]  # {"order", "prompt", "raw", "verdict", "prob_a"}, about the stored A and B
    verdict: str
    probability: float
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: the endpoint has no prices
    seconds: float
    votes: list[str]
    principles: list[str]


def _test_backend(endpoint, timeout: float) -> Backend:
    """A backend for one test: an HTTP endpoint gets a client of its own (its own token counts, one try, at
    most ``timeout`` a request, answers cached like a run's); a local model is the process's."""
    if endpoint.kind != "openai":
        return endpoint_backend(endpoint=endpoint)
    from synth.backends.openai import OpenAIBackend
    base_url_check(endpoint.base_url)
    return OpenAIBackend(base_url=endpoint.base_url, model=endpoint.path,
                         api_key=api_key_decrypt(endpoint.api_key_encrypted),
                         timeout=min(endpoint.timeout_s, timeout), max_concurrency=endpoint.max_concurrency,
                         max_retries=0, cache=DatabaseResponseCache(endpoint.pk), capabilities=endpoint.capabilities)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def judge_test(*, judge: Judge, item: PairItem, user: AbstractBaseUser, timeout: float = JUDGE_TEST_TIMEOUT_S,
               backend: Backend | None = None) -> JudgeTest:
    """Judge one pair with ``judge`` (saved or not) now, as a run would, and store nothing: no AIJudgment, so
    reports never count a test. The endpoint must be open to ``user`` on the item's project. Each request
    waits at most ``timeout`` and is tried once; JudgeTestError (one line) when the endpoint fails."""
    permission_require(user=user, permission=job_start_permission(JudgeRun), doing="test judges")
    if judge.mode == Judge.Mode.STEPS:
        raise ValidationError({"judge": "A test on one pair is for pairwise and pointwise judges; a step judge "
                                        "is tried by a run on a few solutions."})
    endpoint_use_check(endpoint=judge.endpoint, project=item.project, user=user)
    if error := judge.endpoint_mismatch():
        raise ValidationError({"verdict_method": error})
    started = time.monotonic()
    try:
        backend = backend or _test_backend(judge.endpoint, timeout)
        tokens_before = _usage(backend)
        fields = items_evaluate(judge=judge, items=[item], backend=backend)[0]
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 (any failure of the model or its server: said in one line)
        log.info("judge test failed: %s", _one_line(exc))
        raise JudgeTestError(f"The endpoint {judge.endpoint.name!r} failed: {_one_line(exc)}") from None
    seconds = time.monotonic() - started
    prompts = judge_preview(judge=judge, item=item)
    orders = [{"order": prompts[0]["order"], "prompt": prompts[0]["text"], "raw": fields["raw_ab"],
               "verdict": fields["verdict_ab"], "prob_a": fields["prob_a_ab"]}]
    if judge.mode == Judge.Mode.PAIRWISE and fields.get("verdict_ba"):
        orders.append({"order": prompts[1]["order"], "prompt": prompts[1]["text"], "raw": fields["raw_ba"],
                       "verdict": fields["verdict_ba"], "prob_a": fields["prob_a_ba"]})
    prompt_tokens, completion_tokens = fields["prompt_tokens"], fields["completion_tokens"]
    if not (prompt_tokens or completion_tokens):  # a backend without per-prompt usage: its total
        after = _usage(backend)
        prompt_tokens, completion_tokens = after[0] - tokens_before[0], after[1] - tokens_before[1]
    priced = judge.endpoint.cost_per_million_input or judge.endpoint.cost_per_million_output
    return JudgeTest(item_id=item.pk, orders=orders, verdict=fields["verdict"], probability=fields["probability"],
                     prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                     cost=endpoint_cost(endpoint=judge.endpoint, prompt_tokens=prompt_tokens,
                                        completion_tokens=completion_tokens) if priced else None,
                     seconds=round(seconds, 2), votes=list(fields.get("votes") or []),
                     principles=list(fields.get("principles") or []))


def judge_requests_per_item(*, judge: Judge) -> dict:
    """Per pair: prompts (orders x principles), samples (x votes) and requests (the samples, or one request
    a prompt where the server returns several samples at once, or reads log-probabilities)."""
    principles = len(judge_questions(judge=judge)) if judge.principle_use == Judge.PrincipleUse.ALL else 1
    if judge.mode == Judge.Mode.POINTWISE:
        orders = 2  # one prompt per response
    else:
        orders = 2 if judge.debiasing != Judge.Debiasing.NONE and judge.mode == Judge.Mode.PAIRWISE else 1
    generate = judge.verdict_method == Judge.VerdictMethod.GENERATE
    votes = max(1, judge.votes) if generate else 1
    several_at_once = (judge.endpoint.capabilities or {}).get("n") is not False and judge.endpoint.kind == "openai"
    prompts = orders * principles
    return {"orders": orders, "principles": principles, "votes": votes, "prompts": prompts,
            "samples": prompts * votes, "requests": prompts * (1 if several_at_once or votes == 1 else votes)}


def endpoint_seconds_per_request(*, endpoint_id: int, runs: int = 20) -> tuple[float | None, int]:
    """Observed wall time per request on the endpoint: over its latest finished judge runs, their duration
    over the requests they made (concurrency included, as a run sees it); (None, 0) when none is known."""
    seconds = requests = 0.0
    done = (JudgeRun.objects.filter(judge__endpoint_id=endpoint_id, status=JobStatus.DONE, started_at__isnull=False,
                                    finished_at__isnull=False).select_related("judge__endpoint", "judge__constitution")
            .order_by("-finished_at")[:runs])
    counted = 0
    for run in done:
        judged = run.judgments.count()
        if not judged:
            continue
        seconds += max(0.0, (run.finished_at - run.started_at).total_seconds())
        requests += judged * judge_requests_per_item(judge=run.judge)["requests"]
        counted += 1
    return (seconds / requests if requests and seconds else None), counted


def judge_run_estimate(*, judge: Judge, project: Project) -> dict:
    """Before a run: the pairs left to judge at the judge's version, the requests (pairs x orders x
    principles x votes), the tokens (from the template's and the pairs' lengths, ``CHARS_PER_TOKEN``), the
    cost from the endpoint's prices (None without prices), and the time from the endpoint's observed time
    per request (None when no run of it finished yet)."""
    endpoint = judge.endpoint
    per_item = judge_requests_per_item(judge=judge)
    questions = judge_questions(judge=judge)
    question_chars = round(sum(len(q) for _, q in questions) / len(questions))
    base_chars = len(_PLACEHOLDER.sub("", _STEP_PLACEHOLDER.sub("", judge.active_template))) + question_chars
    if judge.mode == Judge.Mode.STEPS:
        mine = StepLabel.objects.filter(source=StepLabel.Source.AI, source_name=judge_source_name(judge=judge))
        pending = StepItem.objects.filter(project=project).exclude(Exists(mine.filter(item=OuterRef("pk"))))
        items = prompts = prompt_chars = 0
        for messages, steps in pending.values_list("prompt__messages", "steps").iterator():
            conv = len(conversation_render(messages))
            items += 1
            prompts += len(steps)
            prompt_chars += sum(base_chars + conv + sum(len(s) + 9 for s in steps[: i + 1]) for i in range(len(steps)))
        prompts *= per_item["principles"]
        prompt_chars *= per_item["principles"]
        samples = prompts * per_item["votes"]
        requests = prompts * (per_item["requests"] // per_item["prompts"])
    else:
        judged = AIJudgment.objects.filter(judge=judge, template_version=judge.template_version, item=OuterRef("pk"))
        pending = PairItem.objects.filter(project=project).exclude(Exists(judged))
        sums = pending.aggregate(n=Count("id"), conv=Sum(Length(Cast("prompt__messages", TextField()))),
                                 a=Sum(Length("completion_a__text")), b=Sum(Length("completion_b__text")))
        items = sums["n"] or 0
        conv, a, b = sums["conv"] or 0, sums["a"] or 0, sums["b"] or 0
        if judge.mode == Judge.Mode.POINTWISE:  # one prompt per response
            one_principle = 2 * (items * base_chars + conv) + a + b
        else:
            one_principle = per_item["orders"] * (items * base_chars + conv + a + b)
        prompt_chars = one_principle * per_item["principles"]
        prompts, samples, requests = (items * per_item["prompts"], items * per_item["samples"],
                                      items * per_item["requests"])
    prompt_tokens = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    generate = judge.verdict_method == Judge.VerdictMethod.GENERATE
    # Generate: at most max_new_tokens a sample (an upper bound); log-probabilities: one token a prompt.
    completion_tokens = samples * judge.max_new_tokens if generate else prompts
    priced = bool(endpoint.cost_per_million_input or endpoint.cost_per_million_output)
    local = endpoint.kind != "openai"
    cost = (endpoint_cost(endpoint=endpoint, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            if priced else 0.0 if local else None)
    per_request, runs_seen = endpoint_seconds_per_request(endpoint_id=endpoint.pk)
    seconds = round(per_request * requests, 1) if per_request is not None else None
    return {
        "items": items, "orders": per_item["orders"], "principles": per_item["principles"],
        "votes": per_item["votes"], "prompts": prompts, "samples": samples, "requests": requests,
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "completion_tokens_upper_bound": generate, "chars_per_token": CHARS_PER_TOKEN,
        "cost": round(cost, 6) if cost is not None else None,
        "cost_note": ("at most: answers may be shorter than max_new_tokens" if priced and generate else
                      "from the endpoint's prices" if priced else "a local model: no price" if local else
                      "unknown: the endpoint has no prices"),
        "seconds_per_request": round(per_request, 4) if per_request is not None else None,
        "seconds": seconds,
        "time_note": (f"from {runs_seen} finished run{'s' if runs_seen != 1 else ''} on this endpoint"
                      if seconds is not None else "unknown: no run on this endpoint has finished yet"),
        "max_cost_per_run": endpoint.max_cost_per_run,
    }
