"""The page of a training job: who may see it and act on it, its progress and ETA, the effective
hyper-parameters, the curves drawn as inline SVG from the metrics, polling that stops when the job ends,
the evaluation and the endpoint it registered."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.roles import researcher_grant
from synth.models import ModelEndpoint
from tests.factories import MembershipFactory, UserFactory
from training.models import DatasetSnapshot, TrainingJob
from training.views_jobs import HEIGHT, LEFT, RIGHT, training_job_charts

pytestmark = pytest.mark.django_db


def metrics_of(steps: int) -> list[dict]:
    """What a DPO run logs, one entry per step (TRL's names), and the run's summary at the end."""
    return [{"step": s, "loss": round(0.7 - 0.05 * s, 4), "learning_rate": 5e-6 * (1 - s / 20),
             "rewards/accuracies": min(1.0, 0.4 + 0.1 * s), "rewards/margins": 0.02 * s,
             "rewards/chosen": 0.01 * s, "rewards/rejected": -0.01 * s, "logps/chosen": -40 + s,
             "logps/rejected": -41 - s, "tokens_per_s": 300.0 + s, "epoch": s / 10} for s in range(1, steps + 1)
            ] + [{"step": steps, "train_runtime": 12.0, "train_loss": 0.5}]


def training_job(project, **fields) -> TrainingJob:
    """A running DPO job of ``project`` (4 of 10 steps, started 40 s ago) unless ``fields`` say otherwise."""
    endpoint = ModelEndpoint.objects.get_or_create(name="base-model", defaults={"path": "unused"})[0]
    snapshot = DatasetSnapshot.objects.create(project=project, name=f"prefs-{DatasetSnapshot.objects.count()}",
                                              file="x.jsonl", sha256="ab" * 32, rows=40)
    now = timezone.now()
    values = {"status": "running", "progress": 4, "total": 10, "attempt": 1, "worker": "gpu-1:4242",
              "started_at": now - timedelta(seconds=40), "heartbeat_at": now,
              "lease_until": now + timedelta(seconds=60), "lease_token": "t", "metrics": metrics_of(4)[:-1],
              "hyperparameters": {"max_steps": 10, "beta": 0.2},
              "log": "".join(f"line {i}\n" for i in range(200)) + "<script>alert(1)</script>\n", **fields}
    return TrainingJob.objects.create(base_endpoint=endpoint, snapshot=snapshot, **values)


@pytest.fixture
def researcher(client):
    member = MembershipFactory(researcher=True)
    researcher_grant(user=member.user)
    client.force_login(member.user)
    return member


def page_url(job: TrainingJob) -> str:
    return reverse("training:job", args=[job.snapshot.project_id, job.pk])


def path_points(svg_path: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+),([\d.]+)", svg_path)]


def series_path(html: str, key: str) -> str:
    found = re.search(rf'<path d="([^"]*)"[^>]*data-series="{re.escape(key)}"', html)
    assert found, f"no line for {key}"
    return found.group(1)


# -- the charts ---------------------------------------------------------------------------------------------


def test_charts_draw_a_point_per_logged_step_left_to_right():
    charts = {c.key: c for c in training_job_charts(metrics=metrics_of(6))}
    assert list(charts)[:3] == ["loss", "accuracy", "margin"]
    assert {"rewards", "logps", "learning_rate", "tokens"} <= set(charts)
    assert "epoch" not in charts and "train_loss" not in charts  # the x axis and the run's summary
    loss = charts["loss"].series[0]
    points = path_points(loss.path)
    assert len(points) == loss.points == 6
    xs = [x for x, _ in points]
    assert xs[0] == LEFT and xs[-1] == RIGHT and xs == sorted(xs)
    ys = [y for _, y in points]
    assert ys == sorted(ys), "the loss falls: each point lower on the page is a larger y"
    assert [s.key for s in charts["rewards"].series] == ["rewards/chosen", "rewards/rejected"]
    assert charts["learning_rate"].y_ticks[0][1] == "4.8e-06"


def test_a_method_metric_outside_the_groups_gets_its_own_chart_and_bad_values_are_skipped():
    metrics = [{"step": 1, "loss": 1.0, "kl": 0.0, "rewards/kl_penalty": 0.5},
               {"step": 2, "loss": float("nan"), "kl": 0.1, "rewards/kl_penalty": 0.4},
               {"step": 3, "loss": 0.8, "kl": True, "rewards/kl_penalty": 0.3}]
    charts = {c.key: c for c in training_job_charts(metrics=metrics)}
    assert path_points(charts["loss"].series[0].path) == [(LEFT, pytest.approx(charts["loss"].top)),
                                                           (RIGHT, pytest.approx(charts["loss"].bottom))]
    assert charts["kl"].series[0].points == 2  # a bool is no value
    assert charts["rewards-kl_penalty"].title == "rewards/kl_penalty"
    single = training_job_charts(metrics=[{"step": 5, "loss": 0.3}])[0]
    assert single.series[0].points == 1 and single.y_ticks[1][1] == "0.3"  # a flat line in the middle
    assert 0 < single.series[0].last_y < HEIGHT


# -- who may see and act ------------------------------------------------------------------------------------


def test_a_stranger_gets_404_and_an_annotator_may_not_see_cancel_or_retry(client, monkeypatch):
    queued = []
    monkeypatch.setattr("annotate.job_lifecycle.job_queue", queued.append)
    member = MembershipFactory()  # an annotator
    job = training_job(member.project)
    failed = training_job(member.project, status="failed", error="boom")
    client.force_login(UserFactory())
    assert client.get(page_url(job)).status_code == 404
    assert client.post(reverse("training:job_cancel", args=[member.project_id, job.pk])).status_code == 404
    client.force_login(member.user)
    assert client.get(page_url(job)).status_code == 403
    assert client.post(reverse("training:job_cancel", args=[member.project_id, job.pk])).status_code == 403
    assert client.post(reverse("training:job_retry", args=[member.project_id, failed.pk])).status_code == 403
    job.refresh_from_db()
    failed.refresh_from_db()
    assert (job.status, failed.status, queued) == ("running", "failed", [])


def test_a_job_of_another_project_is_not_found(client, researcher):
    other = training_job(MembershipFactory(researcher=True).project)
    url = reverse("training:job", args=[researcher.project_id, other.pk])
    assert client.get(url).status_code == 404


def test_a_researcher_without_the_permission_to_start_training_cannot_retry(client, monkeypatch):
    monkeypatch.setattr("annotate.job_lifecycle.job_queue", lambda job: None)
    member = MembershipFactory(researcher=True)  # the project's role, not the researcher's permission
    client.force_login(member.user)
    failed = training_job(member.project, status="failed", error="boom")
    page = client.get(page_url(failed)).content.decode()
    assert ">Retry<" not in page
    assert client.post(reverse("training:job_retry", args=[member.project_id, failed.pk])).status_code == 403
    failed.refresh_from_db()
    assert failed.status == "failed"


# -- what the page shows -----------------------------------------------------------------------------------


def test_a_running_job_shows_progress_eta_setup_curves_and_log_and_polls(client, researcher):
    job = training_job(researcher.project)
    page = client.get(page_url(job)).content.decode()
    assert "DPO training job #" in page and "Running" in page
    assert re.search(r'id="job-step">4 / 10<', page)
    # 4 steps in 40 s: 0.1 steps/s, 6 steps left: about a minute.
    eta = re.search(r'id="job-eta">([^<]*)<', page).group(1)
    assert eta in ("1 min 00 s", "59 s", "1 min 01 s"), eta
    assert re.search(r'id="job-elapsed">(40|41) s<', page)
    assert 'hx-trigger="every 2s"' in page and f'hx-get="{page_url(job)}"' in page
    assert reverse("training:snapshot_manifest", args=[job.snapshot.project_id, job.snapshot_id]) in page
    # The hyper-parameters: the job's own in bold, the method's defaults beside them.
    assert re.search(r"<code>beta</code><div[^>]*>KL strength[^<]*</div></td><td><b>0.2</b>", page)
    assert re.search(r'<code>loss_type</code>.*?</td><td><span class="muted">sigmoid</span>', page)
    assert "eval_dataset" not in page
    loss = path_points(series_path(page, "loss"))
    assert len(loss) == 4
    assert len(path_points(series_path(page, "rewards/margins"))) == 4
    assert 'id="chart-logps"' in page and 'id="chart-tokens"' in page
    # The log's tail, escaped.
    assert "line 199" in page and "line 180\n" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert ">Cancel<" in page


def test_the_live_part_alone_answers_htmx_and_stops_polling_once_the_job_ended(client, researcher):
    job = training_job(researcher.project)
    live = client.get(page_url(job), headers={"HX-Request": "true"}).content.decode()
    assert live.lstrip().startswith('<div id="job-live"') and "<html" not in live
    assert 'hx-trigger="every 2s"' in live
    TrainingJob.objects.filter(pk=job.pk).update(status="done", progress=10, finished_at=timezone.now(),
                                                 metrics=metrics_of(10))
    live = client.get(page_url(job), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in live and "hx-get" not in live
    assert len(path_points(series_path(live, "loss"))) == 10
    assert ">Cancel<" not in live


def test_a_finished_reward_model_shows_its_evaluation_and_scorer_endpoint(client, researcher):
    scorer = ModelEndpoint.objects.create(name="base-model-reward-job1", kind=ModelEndpoint.Kind.SCORER, path="m")
    job = training_job(researcher.project, method="reward", status="done", finished_at=timezone.now(),
                       progress=10, result_endpoint=scorer, artifact_path="/models/job-1/model",
                       evaluation={"accuracy": 0.9375, "rows": 16, "mean_margin": 1.23456})
    page = client.get(page_url(job)).content.decode()
    assert "Evaluation on the test split" in page
    assert re.search(r"<td>accuracy</td><td><b>0.938</b>", page)
    assert re.search(r"<td>rows</td><td><b>16</b>", page)
    assert "base-model-reward-job1" in page and "Reward model: one score per response" in page


def test_cancel_and_retry_from_the_page(client, researcher, monkeypatch):
    queued = []
    monkeypatch.setattr("annotate.job_lifecycle.job_queue", queued.append)
    job = training_job(researcher.project)
    response = client.post(reverse("training:job_cancel", args=[researcher.project_id, job.pk]))
    assert response.status_code == 302 and response["Location"] == page_url(job)
    job.refresh_from_db()
    assert job.status == "cancelled" and len(job.metrics) == 4  # what it logged is kept
    page = client.get(page_url(job)).content.decode()
    assert "Cancelled training job" in page and ">Retry<" in page and "hx-trigger" not in page
    client.post(reverse("training:job_retry", args=[researcher.project_id, job.pk]))
    job.refresh_from_db()
    assert job.status == "queued" and [j.pk for j in queued] == [job.pk]
    # Cancelling a job that already ended says so and changes nothing.
    done = training_job(researcher.project, status="done")
    client.post(reverse("training:job_cancel", args=[researcher.project_id, done.pk]))
    done.refresh_from_db()
    assert done.status == "done"


def test_the_admin_links_to_the_page(client):
    member = MembershipFactory(researcher=True)
    job = training_job(member.project)
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert page_url(job) in page


def test_the_polled_part_takes_a_few_queries_whatever_the_series_length(client, researcher,
                                                                       django_assert_max_num_queries):
    short = training_job(researcher.project)
    long = training_job(researcher.project, metrics=metrics_of(3000), progress=3000, total=5000)
    for job in (short, long):
        with django_assert_max_num_queries(8):
            live = client.get(page_url(job), headers={"HX-Request": "true"}).content.decode()
        assert 'id="job-live"' in live
    drawn = path_points(series_path(live, "loss"))  # thinned to about 500 points, the last one kept
    assert 400 <= len(drawn) <= 501 and drawn[-1][0] == RIGHT


def test_a_queued_job_says_where_it_waits_and_a_failed_one_shows_its_whole_error(client, researcher):
    queued = training_job(researcher.project, status="queued", started_at=None, progress=0, metrics=[])
    page = client.get(page_url(queued)).content.decode()
    assert "waiting: next in the training queue" in page and "The curves appear here once" in page
    assert re.search(r'id="job-elapsed">—<', page)
    error = "training.ml.dpo exited with status 1:\n" + "".join(f"trace line {i}\n" for i in range(15))
    failed = training_job(researcher.project, status="failed", error=error, finished_at=timezone.now())
    page = client.get(page_url(failed)).content.decode()
    assert "trace line 0" in page and "trace line 14" in page and "Failed" in page
