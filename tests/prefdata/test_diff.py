"""The diff of two snapshots' rows: matched by prompt and pair, not position; added, removed, flipped,
changed, unchanged; and why, from the lineage and what is known of its ids."""

from datetime import UTC, datetime, timedelta

from prefdata.diff import DiffFacts, manifest_changes, row_identity, rows_diff

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=1)


def pref(prompt: str, chosen: str, rejected: str, margin: float | None = None) -> dict:
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "margin": margin}


def test_rows_are_matched_by_prompt_and_pair_whatever_their_order():
    a = [pref("p1", "x", "y"), pref("p2", "u", "v"), pref("p3", "s", "t", 1.0), pref("p4", "m", "n")]
    b = [pref("p5", "new", "old"), pref("p3", "s", "t", 2.0), pref("p2", "v", "u"), pref("p1", "x", "y")]
    diff = rows_diff(a, b)
    assert diff.counts == {"added": 1, "removed": 1, "flipped": 1, "changed": 1, "unchanged": 1}
    assert diff.entries["added"][0]["row"]["prompt"][0]["content"] == "p5"
    assert diff.entries["added"][0]["row_b"] == 0
    assert diff.entries["removed"][0]["row_a"] == 3
    assert (diff.entries["flipped"][0]["row_a"], diff.entries["flipped"][0]["row_b"]) == (1, 2)
    assert diff.entries["changed"][0]["row"]["margin"] == 2.0
    assert row_identity(pref("p", "a", "b")) == row_identity(pref("p", "b", "a")) != row_identity(pref("p", "a", "c"))


def test_a_flip_by_adjudication_names_the_reviewer_and_a_new_pair_its_labels():
    a = [pref("p1", "x", "y")]
    b = [pref("p1", "y", "x"), pref("p2", "u", "v")]
    lineage_a = [{"item": 1, "prompt": 10, "by": "human", "labels": [100, 101]}]
    lineage_b = [{"item": 1, "prompt": 10, "by": "human", "labels": [100, 101]},
                 {"item": 2, "prompt": 20, "by": "human", "labels": [200]}]
    facts = DiffFacts(
        labels={100: {"annotator": "ann", "created_at": T0 - timedelta(hours=2)},
                101: {"annotator": "bob", "created_at": T0 - timedelta(hours=1)},
                200: {"annotator": "cy", "created_at": T0 + timedelta(hours=3)}},
        items={1: {"adjudicated_by": "rev", "adjudicated_at": T0 + timedelta(hours=1)}},
        a_created=T0, b_created=T1)
    diff = rows_diff(a, b, lineage_a=lineage_a, lineage_b=lineage_b, facts=facts)
    assert diff.counts["flipped"] == 1 and diff.counts["added"] == 1
    (flipped,) = diff.entries["flipped"]
    assert flipped["item"] == 1
    assert flipped["reasons"] == [{"kind": "adjudicated", "by": "rev", "at": (T0 + timedelta(hours=1)).isoformat()}]
    (added,) = diff.entries["added"]
    assert added["reasons"] == [{"kind": "new_labels", "labels": [{"id": 200, "annotator": "cy"}]}]
    assert diff.reasons == {"adjudicated": 1, "new_labels": 1}


def test_an_adjudication_before_both_snapshots_explains_nothing():
    facts = DiffFacts(items={1: {"adjudicated_by": "rev", "adjudicated_at": T0 - timedelta(days=3)}},
                      a_created=T0, b_created=T1)
    lineage = [{"item": 1, "prompt": 10, "by": "human", "labels": [5, 6]}]
    diff = rows_diff([pref("p", "x", "y", 1.0)], [pref("p", "x", "y", 2.0)], lineage_a=lineage, lineage_b=lineage,
                     facts=facts)
    assert diff.counts["changed"] == 1 and diff.entries["changed"][0]["reasons"] == []


def test_new_labels_changed_labels_a_judge_version_and_the_source():
    facts = DiffFacts(
        labels={1: {"annotator": "ann", "created_at": T0 - timedelta(days=1), "updated_at": T0 + timedelta(hours=2)},
                2: {"annotator": "bob", "created_at": T0 + timedelta(hours=1)}},
        judgments={7: {"judge": "j", "version": 1}, 8: {"judge": "j", "version": 2}},
        a_created=T0, b_created=T1)
    a = [pref("p1", "x", "y"), pref("p2", "u", "v"), pref("p3", "s", "t")]
    b = [pref("p1", "y", "x"), pref("p2", "v", "u"), pref("p3", "t", "s")]
    lineage_a = [{"item": 1, "by": "human", "labels": [1]}, {"item": 2, "by": "ai", "judgments": [7]},
                 {"item": 3, "by": "ai", "judgments": [7]}]
    lineage_b = [{"item": 1, "by": "human", "labels": [1, 2]}, {"item": 2, "by": "ai", "judgments": [8]},
                 {"item": 3, "by": "human", "labels": [2]}]
    diff = rows_diff(a, b, lineage_a=lineage_a, lineage_b=lineage_b, facts=facts)
    first, second, third = (e["reasons"] for e in diff.entries["flipped"])
    assert first == [{"kind": "new_labels", "labels": [{"id": 2, "annotator": "bob"}]},
                     {"kind": "label_changed", "labels": [{"id": 1, "annotator": "ann"}]}]
    assert second == [{"kind": "judge_version", "judge": "j", "from": [1], "to": [2]}]
    assert third[0] == {"kind": "source_changed", "from": "ai", "to": "human"}


def test_a_row_gone_because_a_label_changed_says_so_and_otherwise_that_it_is_no_longer_exported():
    facts = DiffFacts(labels={1: {"annotator": "ann", "created_at": T0 - timedelta(days=1),
                                  "updated_at": T0 + timedelta(hours=1)}}, a_created=T0, b_created=T1)
    a = [pref("p1", "x", "y"), pref("p2", "u", "v")]
    diff = rows_diff(a, [], lineage_a=[{"item": 1, "labels": [1]}, {"item": 2, "labels": [9]}], facts=facts)
    assert [e["reasons"][0]["kind"] for e in diff.entries["removed"]] == ["label_changed", "no_longer_exported"]


def test_entries_are_capped_but_counts_are_not():
    a = [pref(f"p{i}", "x", "y") for i in range(30)]
    diff = rows_diff(a, [], limit=5)
    assert diff.counts["removed"] == 30 and len(diff.entries["removed"]) == 5 and diff.truncated


def test_step_rows_match_on_everything_but_their_labels():
    a = [{"prompt": "2+2?", "completions": ["2+2=4", "So 4."], "labels": [True, True]}]
    b = [{"prompt": "2+2?", "completions": ["2+2=4", "So 4."], "labels": [True, False]}]
    assert rows_diff(a, b).counts["changed"] == 1
    assert manifest_changes({"format": "stepwise", "options": {"neutral": "positive"}},
                            {"format": "stepwise", "options": {"neutral": "negative"}}) == [
        {"field": "options", "a": {"neutral": "positive"}, "b": {"neutral": "negative"}}]
