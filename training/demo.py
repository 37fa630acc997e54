"""The demo project and the whole loop, end to end, on one machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from annotate.models import Membership, PairItem, Project
from annotate.roles import researchers_group_ensure
from annotate.services import project_create, project_member_add, prompts_create
from judges.models import Judge
from synth.models import ModelEndpoint, SynthesisJob

DEMO_PROJECT = "Demo: everyday questions"
DEMO_JUDGE = "Demo judge (swap-average, log-probabilities)"
LOGINS = {"admin": "demo-admin", "annotator": "demo-annotator"}

# Written for this project: short everyday questions a small instruct model can answer.
DEMO_PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Explain in two sentences why the sky looks blue.",
    "Write a haiku about a rainy Monday morning.",
    "How many minutes are there in three hours?",
    "What should I pack for a one-day hike?",
    "Suggest a name for a friendly orange cat.",
    "What is the difference between weather and climate?",
    "Write one sentence to thank a colleague for their help.",
    "How do I boil an egg so the yolk stays soft?",
    "Name three fruits that are high in vitamin C.",
    "What does a thermometer measure?",
    "Give me a short reason to learn a second language.",
    "How can I make my houseplants last longer?",
    "Explain what a noun is to a child.",
    "What is a good way to start a short speech?",
    "List two ways to save water at home.",
    "Why do we have leap years?",
    "Describe the taste of a lemon in one sentence.",
    "What is one simple exercise I can do at my desk?",
]
GUIDELINES = """Pick the response that answers the question better: correct first, then helpful and clear.
Use "tie" when both are equally good and "both bad" when neither answers the question.
Strength says how much better the chosen response is."""


@dataclass
class DemoSetup:
    project: Project
    endpoint: ModelEndpoint
    judge: Judge


def demo_users() -> dict[str, object]:
    researchers_group_ensure()  # "admin" is a superuser; the group is there for the next researchers
    User = get_user_model()
    users = {}
    for username, password in LOGINS.items():
        user, created = User.objects.get_or_create(username=username, defaults={
            "is_staff": username == "admin", "is_superuser": username == "admin"})
        if created:
            user.set_password(password)
            user.save()
        users[username] = user
    return users


def demo_setup(*, endpoint: ModelEndpoint) -> DemoSetup:
    """Idempotent: running it twice leaves one project, one set of prompts, one judge."""
    users = demo_users()
    with transaction.atomic():
        project = Project.objects.filter(name=DEMO_PROJECT).first()
        if project is None:
            project = project_create(name=DEMO_PROJECT, created_by=users["admin"], guidelines=GUIDELINES, overlap=1)
            prompts_create(project=project, conversations=DEMO_PROMPTS, source="demo")
        project_member_add(project=project, user=users["annotator"], role=Membership.Role.ANNOTATOR)
        judge, _ = Judge.objects.get_or_create(name=DEMO_JUDGE, defaults={"endpoint": endpoint})
    return DemoSetup(project=project, endpoint=endpoint, judge=judge)


def demo_loop(*, setup: DemoSetup, say: Callable[[str], None], max_new_tokens: int = 48,
              train_steps: int = 4) -> dict:
    """Run every stage in this process (the AI judge stands in for the annotator) and report."""
    from annotate.job_lifecycle import job_done_check
    from judges.services import judge_run_create, judge_run_execute
    from synth.backends.base import Sampling
    from synth.services import endpoint_backend, synthesis_job_create, synthesis_job_run
    from training.jobs import training_job_create, training_job_run
    from training.models import DatasetSnapshot
    from training.services import snapshot_create

    project, endpoint, judge = setup.project, setup.endpoint, setup.judge
    report: dict = {}
    # 1. Prompts
    say(f"1/6 prompts: project {project.name!r} has {project.prompts.count()} prompts")
    # 2. Completions and pairs
    job = SynthesisJob.objects.filter(project=project, status=SynthesisJob.Status.DONE).first()
    if job is None:
        job = synthesis_job_create(project=project, endpoint=endpoint, max_new_tokens=max_new_tokens, start=False)
        job = job_done_check(synthesis_job_run(job_id=job.pk))
    pairs = PairItem.objects.filter(project=project).count()
    report["pairs"] = pairs
    say(f"2/6 generate: job #{job.pk} sampled {2 * job.total} completions with {endpoint.name}, {pairs} pairs")
    # 3 + 4. The AI judge labels every pair in both orders (standing in for the annotator).
    run = judge_run_create(judge=judge, project=project, start=False)
    run = job_done_check(judge_run_execute(run_id=run.pk))
    judgments = list(judge.judgments.filter(item__project=project))
    flips = sum(j.flipped for j in judgments)
    first = sum(j.verdict_ab == "A" for j in judgments)
    report.update(judgments=len(judgments), flips=flips)
    say("3/6 annotate: headless, the AI judge stands in for the annotator")
    say(f"4/6 judge: {len(judgments)} pairs judged in both orders; picked the first shown {first}/{len(judgments)} "
        f"times; {flips} verdicts flip with the order; final A={sum(j.verdict == 'A' for j in judgments)} "
        f"B={sum(j.verdict == 'B' for j in judgments)}")
    # 5. Snapshot
    snapshot = snapshot_create(project=project, source=DatasetSnapshot.Source.AI)
    report["snapshot_rows"] = snapshot.rows
    say(f"5/6 export: snapshot {snapshot.name} with {snapshot.rows} preference rows, sha256 {snapshot.sha256[:12]}")
    # 6. DPO, then the new model answers a question.
    training = training_job_create(base_endpoint=endpoint, snapshot=snapshot, start=False,
                                   hyperparameters={"max_steps": train_steps, "batch_size": 2, "max_length": 256})
    training = job_done_check(training_job_run(job_id=training.pk))
    answer = endpoint_backend(endpoint=training.result_endpoint).generate(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        Sampling(max_new_tokens=20, temperature=0.0))[0][0]
    report.update(final_loss=training.final_loss, endpoint=training.result_endpoint.name, answer=answer)
    say(f"6/6 train: DPO job #{training.pk} ran {train_steps} steps, last loss {training.final_loss:.4f}; "
        f"registered {training.result_endpoint.name!r}, which answers: {answer!r}")
    return report
