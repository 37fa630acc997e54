"""What changed between two snapshots of a dataset, row by row, and why.

Rows are matched by what they are about, not by position: a preference row by its prompt and its pair of
replies (in either order), any other row by its fields less the verdict fields (``chosen``, ``rejected``,
``label``, ``labels``, ``margin``). A matched row is

- ``unchanged``: the same bytes;
- ``flipped``: chosen and rejected swapped (a preference row);
- ``changed``: anything else differs (a margin, a step's label).

A row of one snapshot only is ``added`` (in b) or ``removed`` (from a). The reasons come from the rows'
lineage (the manifests' ``lineage``, one entry per row: ``item``, ``prompt``, ``by``, ``labels`` or
``label``, ``judgments``, ``adjudicated``) and from ``DiffFacts``, what the database says about those ids
(who gave a label and when, a judgment's judge and version, an item's adjudication). A reason is a dict
with a ``kind`` (``REASON_KINDS``) and its details.

Pure: no Django, no files; the caller reads the rows and gathers the facts.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATUSES = ("added", "removed", "flipped", "changed", "unchanged")
REASON_KINDS = {
    "adjudicated": "a reviewer adjudicated the item",
    "new_labels": "labels given since the other snapshot",
    "labels_removed": "labels that no longer count",
    "label_changed": "a label was changed",
    "judge_version": "the AI judgments come from another judge version",
    "new_judgments": "AI judgments made since the other snapshot",
    "source_changed": "the row comes from another source (human, ai, adjudication)",
    "now_exported": "the item was not exported before (unlabeled, a tie, no majority, gold)",
    "no_longer_exported": "the export rules leave the item out now (a tie, no majority, no labels)",
}
VERDICT_FIELDS = frozenset({"chosen", "rejected", "label", "labels", "margin"})


@dataclass(frozen=True, slots=True)
class DiffFacts:
    """What the database says about the ids of the two lineages, gathered by the caller.

    ``labels``: id -> ``{"annotator", "created_at", "updated_at"}``; ``judgments``: id -> ``{"judge",
    "version", "created_at"}``; ``items``: id -> ``{"adjudicated_by", "adjudicated_at"}``; the times are
    datetimes. ``a_created`` and ``b_created``: when the snapshots were made (what happened between them
    explains a change)."""

    labels: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    judgments: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    items: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    a_created: datetime | None = None
    b_created: datetime | None = None

    def between(self, when: datetime | str | None) -> bool:
        """Whether ``when`` falls after the older snapshot and no later than the newer one (True when the
        snapshots' times are unknown and ``when`` is known)."""
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        if when is None:
            return False
        if self.a_created is None or self.b_created is None:
            return True
        low, high = sorted((self.a_created, self.b_created))
        return low < when <= high


@dataclass(slots=True)
class RowsDiff:
    """The counts of each status and of each reason, and up to ``limit`` entries of each status but
    ``unchanged`` (``{"status", "row", "row_a", "row_b", "item", "prompt", "reasons"}``; row_a and row_b are
    0-based line numbers)."""

    counts: dict[str, int]
    reasons: dict[str, int]
    entries: dict[str, list[dict[str, Any]]]
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "reasons": self.reasons, "truncated": self.truncated, **self.entries}


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _preference(row: Mapping[str, Any]) -> bool:
    return "chosen" in row and "rejected" in row


def row_identity(row: Mapping[str, Any]) -> str:
    """What a row is about: its prompt and pair (either order) for a preference row, else its fields less
    the verdict fields."""
    rest = {k: v for k, v in row.items() if k not in VERDICT_FIELDS}
    if _preference(row):
        rest["pair"] = sorted((_digest(row["chosen"]), _digest(row["rejected"])))
    return _digest(rest)


@dataclass(slots=True)
class _Row:
    index: int
    row: Mapping[str, Any]
    digest: str
    lineage: Mapping[str, Any]


def _ids(entry: Mapping[str, Any] | None, plural: str, singular: str | None = None) -> set[int]:
    if not entry:
        return set()
    ids = set(entry.get(plural) or ())
    if singular and entry.get(singular) is not None:
        ids.add(entry[singular])
    return ids


def _versions(ids: Iterable[int], facts: DiffFacts) -> dict[str, set[Any]]:
    out: dict[str, set[Any]] = defaultdict(set)
    for judgment_id in ids:
        fact = facts.judgments.get(judgment_id)
        if fact:
            out[str(fact.get("judge"))].add(fact.get("version"))
    return out


def _label(label_id: int, facts: DiffFacts) -> dict[str, Any]:
    fact = facts.labels.get(label_id, {})
    return {"id": label_id, "annotator": fact.get("annotator")}


def _adjudication(entry: Mapping[str, Any] | None, facts: DiffFacts) -> dict[str, Any] | None:
    """The item's adjudication, from the lineage if it records one, else from the facts."""
    if not entry or entry.get("item") is None:
        return None
    fact = dict(facts.items.get(entry["item"], {}))
    for key in ("adjudicated_by", "adjudicated_at"):
        if entry.get(key) is not None:
            fact[key] = entry[key]
    return fact if fact.get("adjudicated_at") is not None else None


def _iso(when: object) -> object:
    return when.isoformat() if isinstance(when, datetime) else when


def row_reasons(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, facts: DiffFacts,
                status: str) -> list[dict[str, Any]]:
    """Why a row's status is what it is, from its lineage in a and in b (None: not a row there)."""
    reasons: list[dict[str, Any]] = []
    # 1. An adjudication between the snapshots (or one the lineage of one side records and the other not).
    adjudication = _adjudication(b, facts) or _adjudication(a, facts)
    if adjudication and facts.between(adjudication["adjudicated_at"]):
        reasons.append({"kind": "adjudicated", "by": adjudication.get("adjudicated_by"),
                        "at": _iso(adjudication["adjudicated_at"])})
    elif a and b and bool(a.get("adjudicated")) != bool(b.get("adjudicated")):
        reasons.append({"kind": "adjudicated", "by": None, "at": None, "undone": bool(a.get("adjudicated"))})
    # 2. The source of the verdict.
    if a and b and a.get("by") != b.get("by"):
        reasons.append({"kind": "source_changed", "from": a.get("by"), "to": b.get("by")})
    # 3. Labels: new, gone, or changed between the snapshots.
    labels_a, labels_b = _ids(a, "labels", "label"), _ids(b, "labels", "label")
    if a is not None:
        new = sorted(labels_b - labels_a)
    else:  # no row in a: its labels are new if they were given since
        new = sorted(i for i in labels_b if i in facts.labels and facts.between(facts.labels[i].get("created_at")))
    if new:
        reasons.append({"kind": "new_labels", "labels": [_label(i, facts) for i in new]})
    gone = sorted(labels_a - labels_b) if b is not None else []
    if gone:
        reasons.append({"kind": "labels_removed", "labels": [_label(i, facts) for i in gone]})
    kept = labels_a & labels_b if a is not None and b is not None else labels_a | labels_b
    changed = sorted(i for i in kept - set(new) if i in facts.labels
                     and facts.labels[i].get("updated_at") is not None
                     and facts.labels[i].get("updated_at") != facts.labels[i].get("created_at")
                     and facts.between(facts.labels[i]["updated_at"]))
    if changed:
        reasons.append({"kind": "label_changed", "labels": [_label(i, facts) for i in changed]})
    # 4. AI judgments: another judge version, or judgments made since.
    judgments_a, judgments_b = _ids(a, "judgments"), _ids(b, "judgments")
    versions_a, versions_b = _versions(judgments_a, facts), _versions(judgments_b, facts)
    for judge in sorted(set(versions_a) | set(versions_b)):
        if versions_a.get(judge) and versions_b.get(judge) and versions_a[judge] != versions_b[judge]:
            reasons.append({"kind": "judge_version", "judge": judge, "from": sorted(versions_a[judge]),
                            "to": sorted(versions_b[judge])})
    new_judgments = sorted(judgments_b - judgments_a) if a is not None else sorted(
        i for i in judgments_b if i in facts.judgments and facts.between(facts.judgments[i].get("created_at")))
    if new_judgments and not any(r["kind"] == "judge_version" for r in reasons):
        reasons.append({"kind": "new_judgments", "judgments": [
            {"id": i, "judge": facts.judgments.get(i, {}).get("judge"),
             "version": facts.judgments.get(i, {}).get("version")} for i in new_judgments]})
    # 5. Nothing else to say: the export rules now keep or leave out the item.
    if not reasons and status == "added":
        reasons.append({"kind": "now_exported"})
    elif not reasons and status == "removed":
        reasons.append({"kind": "no_longer_exported"})
    return reasons


def rows_diff(rows_a: Iterable[Mapping[str, Any]], rows_b: Iterable[Mapping[str, Any]], *,
              lineage_a: Iterable[Mapping[str, Any]] | None = None,
              lineage_b: Iterable[Mapping[str, Any]] | None = None,
              facts: DiffFacts | None = None, limit: int | None = 100) -> RowsDiff:
    """The rows of b against those of a: each added, removed, flipped, changed or unchanged, and why.

    a is held in memory (a digest, its row and lineage per row); b and its lineage are streamed. Lineage
    entries run beside the rows, one per row, as a snapshot's manifest keeps them (a missing one is {});
    without them only the statuses are known."""
    facts = facts or DiffFacts()
    lineage_a_iter, lineage_b_iter = iter(lineage_a or ()), iter(lineage_b or ())
    pending: dict[str, list[_Row]] = defaultdict(list)
    a_by_item: dict[Any, Mapping[str, Any]] = {}
    for index, row in enumerate(rows_a):
        entry = next(lineage_a_iter, None) or {}
        pending[row_identity(row)].append(_Row(index, row, _digest(row), entry))
        if entry.get("item") is not None:
            a_by_item.setdefault(entry["item"], entry)
    counts: Counter = Counter({status: 0 for status in STATUSES})
    reasons: Counter = Counter()
    entries: dict[str, list[dict[str, Any]]] = {status: [] for status in STATUSES if status != "unchanged"}
    truncated = False

    def record(status: str, row: Mapping[str, Any], a: _Row | None, b_index: int | None,
               b_entry: Mapping[str, Any] | None) -> None:
        nonlocal truncated
        counts[status] += 1
        if status == "unchanged":
            return
        a_entry = a.lineage if a is not None else None
        if status == "added" and b_entry and b_entry.get("item") in a_by_item:
            a_entry = None  # the item had another row in a (another pair order): no row of it to compare
        why = row_reasons(a_entry, b_entry, facts, status)
        reasons.update(r["kind"] for r in why)
        if limit is not None and len(entries[status]) >= limit:
            truncated = True
            return
        lineage = b_entry or a_entry or {}
        entries[status].append({"status": status, "row": row, "row_a": a.index if a else None, "row_b": b_index,
                                "item": lineage.get("item"), "prompt": lineage.get("prompt"), "reasons": why})

    for index, row in enumerate(rows_b):
        entry = next(lineage_b_iter, None) or {}
        candidates = pending.get(row_identity(row))
        if not candidates:
            record("added", row, None, index, entry)
            continue
        # Among rows about the same thing, the one of the same item if the lineage says so.
        match = next((c for c in candidates if entry.get("item") is not None
                      and c.lineage.get("item") == entry.get("item")), candidates[0])
        candidates.remove(match)
        if match.digest == _digest(row):
            status = "unchanged"
        elif _preference(row) and _digest(row["chosen"]) == _digest(match.row["rejected"]) \
                and _digest(row["rejected"]) == _digest(match.row["chosen"]):
            status = "flipped"
        else:
            status = "changed"
        record(status, row, match, index, entry)
    for gone in sorted((r for rs in pending.values() for r in rs), key=lambda r: r.index):
        record("removed", gone.row, gone, None, None)
    return RowsDiff(counts=dict(counts), reasons=dict(sorted(reasons.items())), entries=entries, truncated=truncated)


def manifest_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What differs between two manifests besides the rows: format, source, options, the adjudication rule,
    the project."""
    out = []
    for key in ("project", "format", "record", "source", "options", "adjudications"):
        if a.get(key) != b.get(key):
            out.append({"field": key, "a": a.get(key), "b": b.get(key)})
    return out
