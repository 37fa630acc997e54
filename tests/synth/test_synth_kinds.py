"""Every kind of synthesis job, on scripted OpenAI-compatible servers (tests/http_server.py) and the tiny
model: params checked per kind, filters, elimination rules, dedup, lineage (job, endpoint, parents, depth),
diversity, the best-of-N curve with its KL bound, tokens and cost, the cost estimate and cap, and a run
resumed after its worker died that stores nothing twice."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotate.job_lifecycle import job_retry
from annotate.models import Completion, PairItem, Prompt
from synth.models import Constitution, Generation, ModelEndpoint, Principle, SynthesisJob, SynthesisStep, SyntheticRow
from synth.selectors import synthetic_sft_rows, synthetic_share
from synth.services import synthesis_job_create, synthesis_job_run
from tests.factories import ProjectFactory, PromptFactory
from tests.http_server import Server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_backends")]


class ScriptedChat(Server):
    """A server whose answer depends on the request: ``respond(last user message, number) -> text``."""

    def __init__(self, respond, **kwargs) -> None:
        super().__init__(**kwargs)
        self.respond = respond

    def answer(self, body: dict, number: int) -> tuple[dict, int]:
        last = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        n = body.get("n", 1)
        choices = [{"index": i, "message": {"role": "assistant", "content": self.respond(last, number, i)},
                    "finish_reason": "stop"} for i in range(n)]
        return {"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": 5}}, 200


@pytest.fixture
def chat():
    servers = []

    def start(respond, **kwargs):
        server = ScriptedChat(respond, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def http_endpoint(server, name="m", **fields):
    return ModelEndpoint.objects.create(name=name, kind="openai", path="m", base_url=server.url, **fields)


def project_with(texts):
    project = ProjectFactory()
    for text in texts:
        PromptFactory(project=project, messages=[{"role": "user", "content": text}])
    return project


def run(job):
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "done", job.error
    return job


# -- params ----------------------------------------------------------------------------------------------------


def test_params_are_checked_per_kind_with_the_field_named(chat):
    server = chat(lambda last, number, i: "x")
    project = project_with(["Q?"])
    endpoint = http_endpoint(server)

    def error(**kwargs):
        with pytest.raises(ValidationError) as caught:
            synthesis_job_create(project=project, endpoint=endpoint, start=False, **kwargs)
        return caught.value.message_dict

    assert "temperature" in error(kind="sampling", params={"temperature": 3})
    assert "n" in error(kind="best_of_n", params={"n": 1})
    assert "strategy" in error(kind="sampling", params={"strategy": "loudest"})
    assert "rounds" in error(kind="self_instruct", params={"rounds": 2})  # not a Self-Instruct parameter
    assert "methods" in error(kind="evol_instruct", params={"methods": ["deepen", "shout"]})
    assert "scorer" in error(kind="sampling", params={"strategy": "best_vs_worst"})
    assert "scorer" in error(kind="best_of_n")
    assert "scorer" in error(kind="best_of_n", scorer=endpoint)  # not a reward model
    assert "constitution" in error(kind="constitutional")
    assert "endpoint" in error(kind="magpie")  # an HTTP server has no chat template to cut
    assert "kind" in error(kind="poetry")
    assert "extra_endpoints" in error(kind="sampling", params={"extra_endpoints": [987654]})
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="sampling", params={"n": "3"}, start=False)
    assert job.params["n"] == 3 and job.params["strategy"] == "all" and job.params["dedup_threshold"] == 0.8


# -- response sampling -----------------------------------------------------------------------------------------


def test_sampling_across_models_with_dedup_lineage_tokens_and_cost(chat):
    # Model A answers the same twice for every prompt (a duplicate removed); model B answers differently.
    a = chat(lambda last, number, i: f"A says the answer to {last} is plain")
    b = chat(lambda last, number, i: f"B answer {i} to {last}: " + " ".join(["word"] * (i + 1)) + f" {number}")
    project = project_with(["What is two plus two?", "Name a colour.", "Why is the sky blue?"])
    endpoint_a = http_endpoint(a, "a", cost_per_million_input=1000.0, cost_per_million_output=2000.0)
    endpoint_b = http_endpoint(b, "b")
    with pytest.raises(ValidationError) as caught:  # a paid run waits for the estimate to be confirmed
        synthesis_job_create(project=project, endpoint=endpoint_a, kind="sampling", confirm_cost=False,
                             params={"n": 2, "extra_endpoints": [endpoint_b.pk]}, start=False)
    assert "confirm_cost" in caught.value.message_dict
    job = synthesis_job_create(project=project, endpoint=endpoint_a, kind="sampling", start=False,
                               params={"n": 2, "extra_endpoints": [endpoint_b.pk], "strategy": "across_models",
                                       "max_pairs": 0, "system_prompt": "Be brief."})
    assert job.estimated_cost > 0 and job.total == 3
    job = run(job)
    assert job.stats["counts"]["duplicates_exact"] == 3  # A's second sample of each prompt
    assert job.stats["counts"]["samples"] == 12
    # Per prompt: A's one kept sample against B's two.
    assert PairItem.objects.filter(project=project).count() == 6 == job.stats["counts"]["pairs"]
    for item in PairItem.objects.filter(project=project):
        assert {item.completion_a.model_name, item.completion_b.model_name} == {"a", "b"}
    generation = Generation.objects.filter(job=job).first()
    assert generation.depth == 1 and generation.parents == [{"prompt": generation.completion.prompt_id}]
    assert SyntheticRow.objects.filter(job=job, kind="pair").count() == 6
    assert all(r["body"]["messages"][0] == {"role": "system", "content": "Be brief."} for r in a.requests)
    # Tokens from the servers' bills; cost from endpoint A's prices (B is free).
    assert job.prompt_tokens == 10 * (len(a.requests) + len(b.requests))
    assert job.cost == pytest.approx(len(a.requests) * (10 * 1000 + 5 * 2000) / 1e6)
    assert job.seconds > 0
    assert 0 < job.stats["diversity"]["distinct_1"] <= 1 and "self_bleu" in job.stats["diversity"]
    share = synthetic_share(project=project)
    assert share["synthetic_completions"] == 9 and share["max_depth"] == 1


def test_the_job_cap_stops_a_paid_run_and_a_retry_goes_on_without_duplicates(chat):
    server = chat(lambda last, number, i: f"answer {number} {i} to {last}")
    project = project_with([f"Question {k}?" for k in range(4)])
    endpoint = http_endpoint(server, cost_per_million_input=1e5, cost_per_million_output=0.0)
    # A batch of one prompt is one request (n=2) of 10 prompt tokens at 0.1 a token: 1 unit. A cap of 2.5
    # allows two batches: a third would pass it.
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="sampling", start=False,
                               params={"n": 2, "batch_size": 1, "max_cost": 2.5})
    job = synthesis_job_run(job_id=job.pk)
    assert job.status == "failed" and "spending cap" in job.error
    assert job.cost == pytest.approx(2.0) and PairItem.objects.filter(project=project).count() == 2
    job.params["max_cost"] = None
    SynthesisJob.objects.filter(pk=job.pk).update(params=job.params)
    job = run(job_retry(job=job))
    assert PairItem.objects.filter(project=project).count() == 4
    assert SynthesisStep.objects.filter(job=job).count() == 4 and job.cost == pytest.approx(4.0)
    assert len(server.requests) == 4  # the retry asked only for the prompts not done


class Killed(BaseException):
    """A worker killed in the middle of a chunk: nothing of the chunk is committed."""


def test_a_run_resumed_after_its_worker_died_adds_no_duplicate(chat, monkeypatch):
    server = chat(lambda last, number, i: f"answer {number} {i} to {last}")
    project = project_with([f"Question {k}?" for k in range(5)])
    endpoint = http_endpoint(server)
    job = synthesis_job_create(project=project, endpoint=endpoint, kind="sampling", start=False,
                               params={"n": 2, "batch_size": 2})
    from synth import pipelines

    real_commit = pipelines.Run.commit
    calls = {"n": 0}

    def commit(self, chunk, write):
        calls["n"] += 1
        if calls["n"] == 2:  # dies while storing the second chunk
            def dying():
                write()
                raise Killed
            return real_commit(self, chunk, dying)
        return real_commit(self, chunk, write)

    monkeypatch.setattr(pipelines.Run, "commit", commit)
    with pytest.raises(Killed):
        synthesis_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "running" and PairItem.objects.filter(project=project).count() == 2
    assert Completion.objects.filter(prompt__project=project).count() == 4  # the dying chunk left nothing
    # Its lease passes; the next delivery resumes it.
    SynthesisJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    job = run(job)
    assert job.attempt == 2
    assert PairItem.objects.filter(project=project).count() == 5
    assert Completion.objects.filter(prompt__project=project).count() == 10
    assert job.stats["counts"]["pairs"] == 5 and job.progress == 5


# -- Self-Instruct --------------------------------------------------------------------------------------------------


SEEDS = ["Write a haiku about autumn leaves falling", "Explain recursion to a ten year old child",
         "List three uses of baking soda at home"]


def test_self_instruct_filters_rouge_and_dedup(chat):
    answer = ("Task 4: Summarize the story of a famous novel in two sentences\n"
              "Task 5: Describe the image below in detail\n"  # unanswerable
              "Task 6: Hi\n"  # too short
              "Task 7: I'm sorry, I cannot come up with tasks today\n"  # refusal
              "Task 8: Write a haiku about autumn leaves falling down\n"  # ROUGE-L against a seed >= 0.7
              "Task 9: Translate good morning into Spanish and Italian please\n"  # repeats a project prompt
              "Task 10: Summarize the story of a famous novel in two sentences")  # exact duplicate
    server = chat(lambda last, number, i: answer if number == 1 else "Task 1: Give a synonym for happy in context")
    project = project_with(["Translate good morning into Spanish and Italian please"])
    job = synthesis_job_create(project=project, endpoint=http_endpoint(server), kind="self_instruct", start=False,
                               params={"seed_tasks": SEEDS, "batch_size": 1, "num_instructions": 2,
                                       "examples": 4, "temperature": 0})
    job = run(job)
    counts = job.stats["counts"]
    assert counts["filtered_unanswerable"] == 1 and counts["filtered_too_short"] == 1
    assert counts["filtered_refusal"] == 1
    assert counts["filtered_duplicate_existing"] == 1
    # The seed's near copy and the repeat of the kept task (ROUGE-L against the pool it joined).
    assert counts["filtered_rouge"] == 2
    assert counts["prompts"] == 2 and counts["candidates"] == 8 and len(server.requests) == 2
    made = SyntheticRow.objects.filter(job=job, kind="prompt").order_by("id")
    assert [r.prompt.last_user_text for r in made] == ["Summarize the story of a famous novel in two sentences",
                                                        "Give a synonym for happy in context"]
    assert made[0].depth == 1 and {"seed_task": SEEDS[0]} in made[0].parents
    # The second round's request showed tasks of the pool, which now holds the first new one.
    assert "Summarize the story" in server.requests[1]["body"]["messages"][0]["content"]
    assert job.progress == 2 and job.stats["rows"] == {"prompt": 2}
    assert Prompt.objects.filter(project=project).count() == 3


# -- Evol-Instruct ---------------------------------------------------------------------------------------------------


def test_evol_instruct_rounds_elimination_and_depth(chat):
    def respond(last, number, i):
        if "#The Given Prompt#" in last or "#Given Prompt#" in last:
            given = last.split("Prompt#:\n", 1)[1].split("\n#", 1)[0]
            if given.startswith("Sort"):
                return given.upper()  # no new information
            if given.startswith("Name"):
                return "#Rewritten Prompt#: Rewrite the given prompt about rivers"  # copies the template
            return f"{given} Then explain each step"
        if last.startswith("Add"):
            return "Sorry, I can't."  # a refusal: eliminated
        return f"Here is a full answer to: {last}"

    server = chat(respond)
    project = project_with(["Sort the list 3 1 2.", "Name a river in Asia.", "Add 2 and 3.", "Count to five."])
    job = synthesis_job_create(project=project, endpoint=http_endpoint(server), kind="evol_instruct", start=False,
                               params={"rounds": 2, "methods": ["reasoning"], "batch_size": 4})
    job = run(job)
    counts = job.stats["counts"]
    assert counts["eliminated_no_new_information"] == 2 and counts["eliminated_copies_prompt"] == 2
    assert counts["eliminated_refusal"] == 2
    rows = list(SyntheticRow.objects.filter(job=job, kind="prompt").order_by("depth"))
    assert [r.prompt.last_user_text for r in rows] == ["Count to five. Then explain each step",
                                                       "Count to five. Then explain each step Then explain each step"]
    assert [r.depth for r in rows] == [1, 2]
    assert rows[1].parents == [{"prompt": rows[0].prompt_id}] and rows[1].meta["method"] == "reasoning"
    answer = Completion.objects.get(prompt=rows[1].prompt)
    assert answer.generation.depth == 3 and answer.generation.job == job


# -- constitutional critique and revision ----------------------------------------------------------------------------


def test_constitutional_sft_rows_and_pairs_record_their_principles(chat):
    def respond(last, number, i):
        if last.startswith("Critique request"):
            return "It is rude."
        if last.startswith("Revision request"):
            return "Revision: A polite answer."
        return "A rude answer."

    server = chat(respond)
    constitution = Constitution.objects.create(name="polite")
    for k, name in enumerate(["polite", "honest"]):
        Principle.objects.create(constitution=constitution, name=name, critique_request=f"Is it {name}?",
                                 revision_request=f"Make it {name}.", comparison_question="Which?", order=k)
    project = project_with(["Tell me about my neighbour.", "Say hello."])
    job = synthesis_job_create(project=project, endpoint=http_endpoint(server), kind="constitutional", start=False,
                               constitution=constitution, params={"rounds": 2})
    job = run(job)
    assert job.constitution_version == 1
    sft = list(synthetic_sft_rows(project=project))
    assert len(sft) == 2 and sft[0]["completion"] == [{"role": "assistant", "content": "A polite answer."}]
    assert sorted(p["name"] for p in sft[0]["meta"]["principles"]) == ["honest", "polite"]
    assert sft[0]["depth"] == 2 and len(sft[0]["meta"]["rounds"]) == 2
    pairs = SyntheticRow.objects.filter(job=job, kind="pair")
    assert pairs.count() == 2
    item = pairs[0].pair_item
    assert item.completion_a.text == "A polite answer." and item.completion_b.text == "A rude answer."
    assert pairs[0].meta["chosen"] == item.completion_a_id
    # Critique and revision requests carry the principle's words.
    asks = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert any("Is it honest?" in a for a in asks) and any("Make it polite." in a for a in asks)


# -- Magpie and best-of-N on the tiny model ------------------------------------------------------------------------


def test_magpie_on_the_tiny_model(tiny_endpoint):
    project = project_with(["Existing question?"])
    job = synthesis_job_create(project=project, endpoint=tiny_endpoint, kind="magpie", start=False,
                               params={"num_instructions": 3, "max_rounds": 2, "batch_size": 4,
                                       "max_new_tokens": 12, "min_words": 1, "temperature": 1.0})
    job = run(job)
    counts = job.stats["counts"]
    filtered = sum(v for k, v in counts.items() if k.startswith("filtered_"))
    made = SyntheticRow.objects.filter(job=job, kind="prompt")
    assert counts["candidates"] >= 4 and counts.get("prompts", 0) == made.count() <= 3
    assert counts.get("prompts", 0) + filtered <= counts["candidates"]
    for row in made:
        assert row.meta["prefix"] == "<|user|>" and row.depth == 1
        assert SyntheticRow.objects.filter(job=job, kind="sft", prompt=row.prompt).count() == 1
    assert job.completion_tokens > 0  # counted with the tokenizer: no bill for a local model


@pytest.fixture
def scorer_endpoint(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model_dir, num_labels=1))
    model.save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "rm")
    return ModelEndpoint.objects.create(name="rm", kind="scorer", path=str(tmp_path / "rm"))


def test_best_of_n_curve_kl_bound_sft_and_pair(tiny_endpoint, scorer_endpoint):
    project = project_with(["What is the capital of France?", "Give me three tips for sleeping better."])
    job = synthesis_job_create(project=project, endpoint=tiny_endpoint, kind="best_of_n", scorer=scorer_endpoint,
                               start=False, params={"n": 4, "max_new_tokens": 8, "temperature": 1.0,
                                                    "dedup_threshold": 1.0})
    job = run(job)
    sft = SyntheticRow.objects.filter(job=job, kind="sft")
    assert sft.count() == 2
    for row in sft:
        scores = row.meta["scores"]
        best = Completion.objects.get(pk=row.meta["best"])
        assert best.text == row.completion and best.sampling["score"] == max(scores)
        pair = SyntheticRow.objects.get(job=job, kind="pair", prompt=row.prompt)
        assert pair.meta["scores"] == [max(scores), min(scores)] and pair.meta["chosen"] == best.pk
    curve = job.stats["best_of_n"]
    n = min(len(row.meta["scores"]) for row in sft)
    assert [p["n"] for p in curve] == list(range(1, n + 1))
    assert curve[0]["mean_best"] == pytest.approx(
        sum(sum(r.meta["scores"]) / len(r.meta["scores"]) for r in sft) / 2)
    assert all(a["mean_best"] <= b["mean_best"] + 1e-9 for a, b in zip(curve, curve[1:], strict=False))
    assert curve[-1]["kl_bound"] == pytest.approx(math.log(n) - (n - 1) / n)


def test_sampling_on_the_tiny_model_makes_all_pairs(tiny_endpoint):
    project = project_with(["What is the capital of France?", "Not this one: max_prompts is 1."])
    job = run(synthesis_job_create(project=project, endpoint=tiny_endpoint, kind="sampling", start=False,
                                   params={"n": 3, "max_new_tokens": 6, "temperature": 1.0, "dedup_threshold": 1.0,
                                           "max_prompts": 1}))
    assert (job.total, job.progress) == (1, 1)
    assert not PairItem.objects.filter(prompt=project.prompts.order_by("id").last()).exists()
    kept = job.stats["counts"]["samples"] - job.stats["counts"].get("duplicates_exact", 0) \
        - job.stats["counts"].get("duplicates_near", 0)
    assert PairItem.objects.filter(project=project).count() == kept * (kept - 1) // 2
    assert job.completion_tokens > 0
