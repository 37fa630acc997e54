"""The migrations that move constitutions to synth and split the judge's template keep every row."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from judges.models import DEFAULT_POINTWISE_TEMPLATE, DEFAULT_STEP_TEMPLATE

# Migrations change the schema: no test transaction around them (SQLite cannot alter tables inside one).
pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("judges", "0002_job_lifecycle"), ("synth", "0002_job_lifecycle")]
OLD_DEFAULT = ("Compare two responses to the conversation below and decide which one is better:\nmore helpful, "
               "correct and harmless.\n\n[Conversation]\n{conversation}\n\n[Response A]\n{response_a}\n\n"
               "[Response B]\n{response_b}\n\n{question} Answer with one letter, A or B.")


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.fixture
def back_to_latest():
    """Whatever happens in the test, the next test finds the schema of today's models."""
    yield
    migrate(latest())


def test_constitutions_move_to_synth_with_ids_versions_and_judges(back_to_latest):
    old = migrate(BEFORE)
    Constitution, Principle = old.get_model("judges", "Constitution"), old.get_model("judges", "Principle")
    Judge = old.get_model("judges", "Judge")
    endpoint = old.get_model("synth", "ModelEndpoint").objects.create(name="e", path="p")
    # Ids that a renumbering would not keep.
    hh = Constitution.objects.create(id=42, name="HH", description="helpful and harmless", version=3)
    other = Constitution.objects.create(id=7, name="Other", version=1)
    for i, question in enumerate(["Which is less harmful?", "Which is more honest?"]):
        Principle.objects.create(id=100 + i, constitution=hh, name=f"p{i}", critique_request=f"c{i}",
                                 revision_request=f"r{i}", comparison_question=question, order=i)
    Principle.objects.create(id=5, constitution=other, name="only", critique_request="c", revision_request="r",
                             comparison_question="q", order=0)
    judge = Judge.objects.create(name="cai", endpoint=endpoint, constitution=hh, template_version=4,
                                 template="Mine: {conversation} {response_a} {response_b} {question}")
    pointwise = Judge.objects.create(name="points", endpoint=endpoint, mode="pointwise", template="{response}!")
    stepper = Judge.objects.create(name="stepper", endpoint=endpoint, mode="steps", template=OLD_DEFAULT)

    new = migrate(latest())
    Constitution, Principle = new.get_model("synth", "Constitution"), new.get_model("synth", "Principle")
    Judge = new.get_model("judges", "Judge")
    assert {(c.id, c.name, c.description, c.version) for c in Constitution.objects.all()} == {
        (42, "HH", "helpful and harmless", 3), (7, "Other", "", 1)}
    assert list(Principle.objects.order_by("id").values_list(
        "id", "constitution_id", "name", "critique_request", "revision_request", "comparison_question", "order")) == [
        (5, 7, "only", "c", "r", "q", 0),
        (100, 42, "p0", "c0", "r0", "Which is less harmful?", 0),
        (101, 42, "p1", "c1", "r1", "Which is more honest?", 1)]
    judge = Judge.objects.get(pk=judge.pk)
    assert (judge.constitution_id, judge.constitution.version, judge.constitution_version) == (42, 3, 3)
    assert judge.template_version == 4
    # The template went to the field of the judge's mode; the other two have their defaults.
    assert judge.pairwise_template == "Mine: {conversation} {response_a} {response_b} {question}"
    assert (judge.pointwise_template, judge.step_template) == (DEFAULT_POINTWISE_TEMPLATE, DEFAULT_STEP_TEMPLATE)
    pointwise = Judge.objects.get(pk=pointwise.pk)
    assert (pointwise.pointwise_template, pointwise.pairwise_template) == ("{response}!", OLD_DEFAULT)
    assert pointwise.constitution_version is None and pointwise.template_version == 1
    # A steps judge that had the pairwise default (it sent "{response_a}" as text) gets the step template
    # and judges again under a new version.
    stepper = Judge.objects.get(pk=stepper.pk)
    assert (stepper.step_template, stepper.template_version) == (DEFAULT_STEP_TEMPLATE, 2)
    # New rows get ids past the copied ones (the sequences moved on).
    fresh = Constitution.objects.create(name="New")
    assert fresh.id > 42 and Principle.objects.create(constitution=fresh, name="n", critique_request="c",
                                                      revision_request="r", comparison_question="q").id > 101

    # And back: the rows return to judges, with their ids.
    old = migrate(BEFORE)
    Judge = old.get_model("judges", "Judge")
    assert set(old.get_model("judges", "Constitution").objects.values_list("id", "version")) == {
        (42, 3), (7, 1), (fresh.id, 1)}
    assert old.get_model("judges", "Principle").objects.count() == 4
    judge = Judge.objects.get(pk=judge.pk)
    assert judge.constitution_id == 42 and judge.template.startswith("Mine: ")
