"""The synthesis page and API: a form per kind with help texts, errors naming the field, jobs with their
tokens, cost, dedup counts and diversity, the best-of-N curve as inline SVG with its KL bound; scoped to the
user's projects and roles; model output escaped."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.html import escape

from annotate.models import Membership
from annotate.roles import researcher_grant
from synth.models import Constitution, ModelEndpoint, Principle, SynthesisJob, SyntheticRow
from tests.factories import MembershipFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(client):
    membership = MembershipFactory(role=Membership.Role.RESEARCHER)
    researcher_grant(user=membership.user)
    client.force_login(membership.user)
    PromptFactory(project=membership.project)
    return membership


@pytest.fixture
def endpoint():
    return ModelEndpoint.objects.create(name="gen", kind="transformers", path="unused")


def test_the_page_offers_a_form_per_kind_with_help_texts(client, researcher, endpoint):
    ModelEndpoint.objects.create(name="rm", kind="scorer", path="unused")
    page = client.get(reverse("synth:jobs", args=[researcher.project.pk])).content.decode()
    for kind in SynthesisJob.Kind:
        assert f'value="{kind.value}"' in page and escape(kind.label) in page
    assert "Jaccard similarity of word 3-grams" in page  # the dedup threshold's help
    assert 'id="id_magpie_max_new_tokens"' in page and 'id="id_sampling_max_new_tokens"' in page
    # A reward model is offered as a scorer, never as the generator.
    assert page.count('>rm</option>') == 2  # sampling's and best-of-N's scorer choices


def test_creating_jobs_of_each_kind_from_the_page(client, researcher, endpoint):
    url = reverse("synth:jobs", args=[researcher.project.pk])
    form = {"kind": "evol_instruct", "endpoint": endpoint.pk, "max_new_tokens": 32, "temperature": 0.7,
            "top_p": 0.9, "seed": 1, "batch_size": 4, "dedup_threshold": 0.8, "max_prompts": 0, "rounds": 2,
            "methods": ["deepen", "breadth"], "answer": "on"}
    assert client.post(url, form).status_code == 302
    job = SynthesisJob.objects.get()
    assert job.kind == "evol_instruct" and job.params["rounds"] == 2 and job.params["methods"] == ["deepen", "breadth"]
    assert job.created_by == researcher.user
    # A constitutional job without a constitution: the form says which field.
    response = client.post(url, {**form, "kind": "constitutional", "rounds": 1})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    constitution = Constitution.objects.create(name="c")
    response = client.post(url, {"kind": "constitutional", "endpoint": endpoint.pk, "constitution": constitution.pk,
                                 "max_new_tokens": 8, "temperature": 0.5, "top_p": 0.9, "batch_size": 2,
                                 "max_prompts": 0, "rounds": 1})
    assert response.status_code == 200 and "has no principle" in response.content.decode()
    Principle.objects.create(constitution=constitution, name="p", critique_request="c", revision_request="r",
                             comparison_question="q")
    response = client.post(url, {"kind": "constitutional", "endpoint": endpoint.pk, "constitution": constitution.pk,
                                 "max_new_tokens": 8, "temperature": 0.5, "top_p": 0.9, "batch_size": 2,
                                 "max_prompts": 0, "rounds": 1})
    assert response.status_code == 302 and SynthesisJob.objects.filter(kind="constitutional").count() == 1
    # The first kind keeps its old form: an endpoint, tokens and temperature.
    assert client.post(url, {"endpoint": endpoint.pk, "max_new_tokens": 8, "temperature": 0.5}).status_code == 302
    assert SynthesisJob.objects.filter(kind="pairs").count() == 1


def test_job_list_and_detail_show_counts_diversity_and_the_curve_escaped(client, researcher, endpoint):
    job = SynthesisJob.objects.create(
        project=researcher.project, endpoint=endpoint, kind="best_of_n", status="done", prompt_tokens=1234,
        completion_tokens=567, cost=0.25, params={"n": 4},
        stats={"counts": {"duplicates_exact": 3, "duplicates_near": 2, "pairs": 5},
               "diversity": {"distinct_1": 0.41, "distinct_2": 0.77, "self_bleu": 0.12, "texts": 8},
               "best_of_n": [{"n": 1, "mean_best": 0.1, "kl_bound": 0.0}, {"n": 2, "mean_best": 0.4, "kl_bound": 0.193},
                             {"n": 4, "mean_best": 0.6, "kl_bound": 0.636}]})
    SyntheticRow.objects.create(project=researcher.project, job=job, kind="sft", completion="<script>x()</script>",
                                depth=1)
    page = client.get(reverse("synth:jobs", args=[researcher.project.pk])).content.decode()
    assert "1234 in · 567 out" in page and "3 exact, 2 near duplicates" in page
    assert "distinct-1 0.41" in page and "self-BLEU 0.12" in page
    detail = client.get(reverse("synth:job_detail", args=[researcher.project.pk, job.pk])).content.decode()
    assert "<svg" in detail and detail.count("<polyline") == 2 and "KL bound 0.636 nats" in detail
    assert "&lt;script&gt;x()&lt;/script&gt;" in detail and "<script>x()" not in detail
    # Another project's job is not found from this project.
    other = SynthesisJob.objects.create(project=ProjectFactory(), endpoint=endpoint)
    assert client.get(reverse("synth:job_detail", args=[researcher.project.pk, other.pk])).status_code == 404


def test_the_page_and_api_are_for_researchers_of_the_project(client, endpoint):
    annotator = MembershipFactory(role=Membership.Role.ANNOTATOR)
    client.force_login(annotator.user)
    assert client.get(reverse("synth:jobs", args=[annotator.project.pk])).status_code == 403
    assert client.get(reverse("api_synthesis_jobs", args=[annotator.project.pk])).status_code == 403
    assert client.get(reverse("api_synthesis_jobs", args=[ProjectFactory().pk])).status_code == 404


def test_the_api_creates_and_lists_jobs_of_every_kind(client, researcher, endpoint):
    url = reverse("api_synthesis_jobs", args=[researcher.project.pk])
    scorer = ModelEndpoint.objects.create(name="rm", kind="scorer", path="unused")
    constitution = Constitution.objects.create(name="c")
    Principle.objects.create(constitution=constitution, name="p", critique_request="c", revision_request="r",
                             comparison_question="q")
    bodies = {"pairs": {}, "sampling": {"params": {"n": 3, "strategy": "margin", "margin": 0.5}, "scorer": scorer.pk},
              "self_instruct": {"params": {"seed_tasks": ["Write a poem about rain"], "num_instructions": 5}},
              "evol_instruct": {"params": {"rounds": 2}}, "magpie": {"params": {"num_instructions": 4}},
              "constitutional": {"constitution": constitution.pk}, "best_of_n": {"scorer": scorer.pk}}
    for kind, body in bodies.items():
        response = client.post(url, {"kind": kind, "endpoint": endpoint.pk, **body}, content_type="application/json")
        assert response.status_code == 201, response.json()
        assert response.json()["kind"] == kind
    listed = client.get(url).json()
    assert sorted(j["kind"] for j in listed) == sorted(bodies)
    refused = client.post(url, {"kind": "best_of_n", "endpoint": endpoint.pk, "params": {"n": 100}},
                          content_type="application/json")
    assert refused.status_code == 400 and "n" in refused.json()
    for params in ({"temperature": "NaN"}, {"system_prompt": "a\x00b"}, {"extra_endpoints": [2**64]}):
        refused = client.post(url, {"kind": "sampling", "endpoint": endpoint.pk, "params": params},
                              content_type="application/json")
        assert refused.status_code == 400 and set(refused.json()) >= set(params), params
    refused = client.post(url, {"kind": "best_of_n", "endpoint": scorer.pk, "scorer": scorer.pk},
                          content_type="application/json")
    assert refused.status_code == 400 and "endpoint" in refused.json()
    paid = ModelEndpoint.objects.create(name="paid", kind="openai", path="m", base_url="http://127.0.0.1:9/v1",
                                        cost_per_million_output=10.0)
    refused = client.post(url, {"kind": "sampling", "endpoint": paid.pk}, content_type="application/json")
    assert refused.status_code == 400 and "confirm_cost" in refused.json()
    accepted = client.post(url, {"kind": "sampling", "endpoint": paid.pk, "confirm_cost": True},
                           content_type="application/json")
    assert accepted.status_code == 201 and accepted.json()["estimated_cost"] > 0
    job = accepted.json()["id"]
    assert client.get(reverse("api_synthesis_job", args=[researcher.project.pk, job])).json()["id"] == job
