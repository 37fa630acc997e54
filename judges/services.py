"""Judge pairs with a model, in both presentation orders, and store the debiased verdicts."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from annotate.jobs import job_done, job_failure_recorded
from annotate.models import PairItem, Project
from annotate.selectors import pair_items_for_project
from annotate.services import pair_items_prioritize
from judges.models import AIJudgment, Judge, JudgeRun
from synth.backends.base import Backend, Sampling
from synth.services import endpoint_backend

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(conversation|response_a|response_b)\}")


def conversation_render(messages: Sequence[dict]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def judge_prompt(*, template: str, conversation: Sequence[dict], first: str, second: str) -> list[dict]:
    """The judge's chat input. One pass over the template, so text inside a response that looks
    like a placeholder is never substituted."""
    values = {"conversation": conversation_render(conversation), "response_a": first, "response_b": second}
    return [{"role": "user", "content": _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)}]


_VERDICT_PATTERNS = [
    re.compile(r"\[\[\s*([AB])\s*\]\]"),  # MT-Bench: [[A]]
    re.compile(r"(?:final\s+)?(?:verdict|answer|choice)\s*(?:is)?\s*[:\-]?\s*\**\s*(?:response\s+)?\(?([AB])\b\)?",
               re.IGNORECASE),
    re.compile(r"\b(?:response|output|assistant)\s+\(?([AB])\)?\s+is\s+(?:better|preferred|superior)", re.IGNORECASE),
]


def verdict_parse(text: str) -> str | None:
    """The verdict "A" or "B" in a judge's free text, or None when it names neither clearly.

    The last explicit pattern wins (models often restate the question before answering); a reply
    that is just a letter counts too.
    """
    for pattern in _VERDICT_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    bare = text.strip().strip(".*()[]: ").upper()
    return bare if bare in {"A", "B"} else None


@dataclass(frozen=True)
class OrderResult:
    prob_first: float  # P(the response shown first is better)
    raw: str


def _two_way(logp_a: float, logp_b: float) -> float:
    """P(A) from the log-probabilities of "A" and "B", renormalized over the two answers."""
    if logp_a == logp_b:  # also covers both -inf
        return 0.5
    top = max(logp_a, logp_b)
    ea, eb = math.exp(logp_a - top), math.exp(logp_b - top)
    return ea / (ea + eb)


def judge_orders(*, judge: Judge, backend: Backend, conversations: Sequence[list[dict]]) -> list[OrderResult]:
    """Judge many rendered prompts in one batched call."""
    if judge.verdict_method == Judge.VerdictMethod.LOGPROB:
        scores = backend.score(list(conversations), [["A", "B"]] * len(conversations))
        return [OrderResult(prob_first=_two_way(a, b), raw=f"logp(A)={a:.4f} logp(B)={b:.4f}") for a, b in scores]
    texts = backend.generate(list(conversations), Sampling(max_new_tokens=judge.max_new_tokens, temperature=0.0))
    results = []
    for (text,) in texts:
        verdict = verdict_parse(text)
        results.append(OrderResult(prob_first={"A": 1.0, "B": 0.0}.get(verdict or "", 0.5), raw=text))
    return results


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


def items_judge(*, judge: Judge, items: Sequence[PairItem], run: JudgeRun | None = None,
                backend: Backend | None = None) -> list[AIJudgment]:
    """Judge a batch of pairs and store one judgment per (judge version, item); idempotent."""
    backend = backend or endpoint_backend(endpoint=judge.endpoint)
    both = judge.debiasing != Judge.Debiasing.NONE
    prompts = []
    for item in items:
        conv, a, b = item.prompt.messages, item.completion_a.text, item.completion_b.text
        prompts.append(judge_prompt(template=judge.template, conversation=conv, first=a, second=b))
        if both:
            prompts.append(judge_prompt(template=judge.template, conversation=conv, first=b, second=a))
    results = judge_orders(judge=judge, backend=backend, conversations=prompts)
    step = 2 if both else 1
    stored = []
    with transaction.atomic():
        for i, item in enumerate(items):
            ab = results[i * step]
            ba = results[i * step + 1] if both else None
            prob_a_ba = (1.0 - ba.prob_first) if ba else None  # B was shown first: map back to A
            verdict, probability = judgment_combine(debiasing=judge.debiasing, prob_a_ab=ab.prob_first,
                                                    prob_a_ba=prob_a_ba)
            judgment, _ = AIJudgment.objects.get_or_create(
                judge=judge, template_version=judge.template_version, item=item,
                defaults={
                    "run": run, "verdict_ab": _verdict(ab.prob_first),
                    "verdict_ba": _verdict(prob_a_ba) if prob_a_ba is not None else "",
                    "prob_a_ab": ab.prob_first, "prob_a_ba": prob_a_ba, "verdict": verdict,
                    "probability": probability, "raw_ab": ab.raw, "raw_ba": ba.raw if ba else "",
                },
            )
            stored.append(judgment)
    return stored


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


def judge_run_create(*, judge: Judge, project: Project, start: bool = True) -> JudgeRun:
    run = JudgeRun.objects.create(judge=judge, project=project)
    if start:
        from judges.tasks import judge_run_execute_task

        judge_run_execute_task.delay_on_commit(run.pk)
    return run


def judge_run_execute(*, run_id: int, batch_size: int = 8) -> JudgeRun:
    """Judge every pair of the run's project that this judge version has not judged yet.

    Resumable: what is already judged is skipped, so a re-delivered task only finishes the rest.
    """
    with transaction.atomic():
        run = JudgeRun.objects.select_for_update().select_related("judge__endpoint", "project").get(pk=run_id)
        if run.status == JudgeRun.Status.DONE:
            return run
        run.status, run.error = JudgeRun.Status.RUNNING, ""
        run.save(update_fields=["status", "error"])
    judge = run.judge
    with job_failure_recorded(run):
        items = pair_items_for_project(project=run.project)
        judged = set(AIJudgment.objects.filter(judge=judge, template_version=judge.template_version,
                                               item__project=run.project).values_list("item_id", flat=True))
        todo = [item for item in items if item.pk not in judged]
        run.total, run.progress = len(judged) + len(todo), len(judged)
        run.save(update_fields=["total", "progress"])
        backend = endpoint_backend(endpoint=judge.endpoint)
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            items_judge(judge=judge, items=batch, run=run, backend=backend)
            run.progress += len(batch)
            run.save(update_fields=["progress"])
        if run.project.prioritize_disagreements:
            disputed_items_prioritize(project=run.project)
        job_done(run)
    return run
