"""The streaming export of preference snapshots: from the database to a file, flat in memory.

A snapshot of a million pairs does not fit the in-memory path (every row, its lineage and the file's
bytes held at once). Here the rows are read in three streams, each ordered by item id and fetched in
chunks through a server-side cursor on PostgreSQL (``QuerySet.iterator(chunk_size=...)``):

1. the items with their prompt and both completions (one query, joined);
2. their human labels (``item_id, id``), when the source reads people;
3. their AI judgments (``item_id, id``), when the source reads judges.

The streams are merged by item id, each item's labels are aggregated as they go by (the rules of
``training.services.preference_rows``: an adjudication first, else ``prefdata.stats.aggregate_verdicts``,
weighted on request; people before judges for the "both" source; ties and both-bad verdicts dropped and
counted), and each row is encoded to its JSON line. The lines are hashed and written in blocks of about
1 MiB. The number of queries does not depend on the number of rows.

The bytes are those of ``prefdata.writers.dataset_bytes(rows, "jsonl")``: ``json.dumps(row,
ensure_ascii=False) + "\\n"`` per row. A preference row is assembled from the same encoder's pieces (the
string encoder json uses, the float repr it uses) instead of building a dict per row;
``tests/training/test_exporting.py`` checks the bytes against the in-memory path.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # what json.dumps(..., ensure_ascii=False) uses for a str
from operator import itemgetter
from pathlib import Path
from typing import IO

from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, TextField
from django.db.models.functions import Cast

from annotate.models import PairItem, PairLabel, Project
from judges.models import AIJudgment
from prefdata.records import STRENGTHS, VERDICTS
from prefdata.stats import aggregate_verdicts
from synth.models import Generation
from training.filters import ExportFilters

CHUNK_SIZE = 5_000  # rows a fetch from a server-side cursor
BLOCK_BYTES = 1 << 20  # characters hashed and written at a time

# One item's lineage: (item, prompt, chosen, rejected, by, labels or judgments, synthesis jobs of the replies).
Lineage = tuple[int, int, int, int, str, tuple[int, ...], tuple[int, ...]]

_json = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), encoder made once
_DECISIVE = ("A", "B")
_NO_GENERATION = (None, None, None, None, None, None, None)
NO_FILTERS = ExportFilters()


_END = object()


def _read_ahead(rows: Iterator[tuple], *, size: int = CHUNK_SIZE) -> Iterator[tuple]:
    """``rows``, read a chunk ahead by a thread on PostgreSQL: while this thread encodes a chunk, the other
    waits for the server's answer to the next FETCH (psycopg waits without the GIL), so the two overlap.

    The cursor is opened here, by the first row (Django opens a connection's cursors in the connection's
    own thread); the reading thread only fetches from it, with the connection's sharing allowed meanwhile
    (psycopg serialises the connection's use). Elsewhere the rows come as they are."""
    first = next(rows, _END)
    if first is _END:
        return
    yield first
    if connection.vendor != "postgresql":
        yield from rows
        return
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                chunk = list(itertools.islice(rows, size))
                chunks.put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            chunks.put(exc)

    connection.inc_thread_sharing()
    reader = threading.Thread(target=read, name="export-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            chunk = chunks.get()
            if isinstance(chunk, BaseException):
                raise chunk
            if not chunk:
                return
            yield from chunk
    finally:
        stop.set()
        while reader.is_alive():  # a reader blocked on a full queue: make room until it sees the stop
            with contextlib.suppress(queue.Empty):
                chunks.get_nowait()
            reader.join(0.05)
        connection.dec_thread_sharing()


def _grouped(rows: Iterator[tuple]) -> Iterator[tuple[int, list[tuple]]]:
    """(item_id, its rows) from rows ordered by item id (the first column)."""
    for item_id, group in itertools.groupby(rows, key=itemgetter(0)):
        yield item_id, list(group)


class _Merge:
    """The rows of one item at a time from a stream grouped by item id, walked in increasing item id."""

    __slots__ = ("_groups", "_head")

    def __init__(self, rows: Iterator[tuple] | None):
        self._groups = _grouped(rows) if rows is not None else iter(())
        self._head = next(self._groups, None)

    def take(self, item_id: int) -> list[tuple]:
        head = self._head
        while head is not None and head[0] < item_id:  # labels of an item not streamed (not expected)
            head = next(self._groups, None)
        if head is None or head[0] != item_id:
            self._head = head
            return []
        self._head = next(self._groups, None)
        return head[1]


def _verdict(votes: list[tuple], weighted: bool) -> tuple[str | None, list[int], int]:
    """The plurality verdict of one item's ``(item_id, id, verdict, strength, ...)`` rows (None when level),
    the strengths of the graded votes that agree with it, and how many votes agree; ``aggregate_verdicts``'s
    rule and errors."""
    if len(votes) == 1:  # most items: one vote is its own plurality
        verdict, strength = votes[0][2], votes[0][3]
        if verdict in VERDICTS and (strength is None or strength in STRENGTHS):
            graded = [strength] if strength is not None and verdict in _DECISIVE else []
            return verdict, graded, 1
    aggregate = aggregate_verdicts(labels=[(0, v[2], v[3]) for v in votes], weighted=weighted)[0]
    if aggregate.verdict is None:
        return None, [], 0
    agreeing = [v for v in votes if v[2] == aggregate.verdict]
    return aggregate.verdict, [v[3] for v in agreeing if v[3] is not None and v[2] in _DECISIVE], len(agreeing)


def _margin_json(margin: float) -> str:
    """A float as json.dumps writes it (repr; NaN and infinities by name)."""
    return float.__repr__(margin) if math.isfinite(margin) else _json(margin)


# A number outside a string in jsonb's text: it follows "[", ": " or ", " (or starts the text). Inside a
# string the same characters only make the check fail safe (the value is decoded and encoded again).
_JSONB_NUMBER = re.compile(r"[\[:,] ?-?[0-9]")  # starting with a character class: scanned fast
_NUMBER_START = frozenset("-0123456789")


def _jsonb_text_json(text: str) -> str:
    """PostgreSQL's text of a jsonb value as json.dumps(json.loads(text), ensure_ascii=False) writes it.

    They agree except on numbers (jsonb keeps 1e2 and 1.10 as written): jsonb writes ", " and ": " between
    items, keeps keys in its own order (the order json.loads reads back), escapes quotes, backslashes and
    control characters as json does and every other character as it is. A text with a number outside its
    strings is decoded and encoded again."""
    if _JSONB_NUMBER.search(text) is None and text[:1] not in _NUMBER_START:
        return text
    return _json(json.loads(text))


def preference_line(messages: object, chosen: str, rejected: str, margin: float | None, *,
                    prompt_json: str | None = None) -> str:
    """``json.dumps(PreferenceRow(...).to_dict(), ensure_ascii=False) + "\\n"``, built from its pieces
    (``prompt_json``: the prompt already encoded)."""
    tail = "}\n" if margin is None else f', "margin": {_margin_json(margin)}}}\n'
    if prompt_json is None:
        prompt_json = _json(messages)
    return (f'{{"prompt": {prompt_json}, "chosen": [{{"role": "assistant", "content": '
            f'{encode_basestring(chosen)}}}], "rejected": [{{"role": "assistant", "content": '
            f'{encode_basestring(rejected)}}}]{tail}')


def _labels_query(project: Project, filters: ExportFilters):
    labels = PairLabel.objects.filter(item__project=project)
    if filters.annotators:
        labels = labels.filter(annotator_id__in=filters.annotators)
    if filters.since is not None:
        labels = labels.filter(created_at__gte=filters.since)
    if filters.until is not None:
        labels = labels.filter(created_at__lt=filters.until)
    return labels


def _judgments_query(project: Project, filters: ExportFilters):
    judgments = AIJudgment.objects.filter(item__project=project)
    if filters.judges or filters.judge_versions:
        which = Q(judge_id__in=filters.judges)
        for judge, version in filters.judge_versions:
            which |= Q(judge_id=judge, template_version=version)
        judgments = judgments.filter(which)
    if filters.constitution_versions:
        judgments = judgments.filter(constitution_version__in=filters.constitution_versions)
    if filters.since is not None:
        judgments = judgments.filter(created_at__gte=filters.since)
    if filters.until is not None:
        judgments = judgments.filter(created_at__lt=filters.until)
    return judgments


def gold_labeled(*, project: Project, source: str, filters: ExportFilters = NO_FILTERS) -> int:
    """The project's gold items with a label (or judgment) of ``source`` that the filters keep: one query."""
    labeled = Q(pk__in=[])
    if source in ("human", "both"):
        labeled |= Q(Exists(_labels_query(project, filters).filter(item=OuterRef("pk"))))
    if source in ("ai", "both"):
        labeled |= Q(Exists(_judgments_query(project, filters).filter(item=OuterRef("pk"))))
    return PairItem.objects.filter(labeled, project=project, is_gold=True).count()


@dataclass
class Sources:
    """Who and what made a snapshot's rows, counted row by row as they are written: the annotators whose
    labels decided a row, the judges (id, template version, constitution version) whose judgments did,
    the adjudications and their reviewers, and the synthesis jobs and endpoints that generated a reply."""

    annotators: Counter = field(default_factory=Counter)
    judges: Counter = field(default_factory=Counter)
    adjudicators: Counter = field(default_factory=Counter)
    adjudicated: int = 0
    synthesis_jobs: Counter = field(default_factory=Counter)
    endpoints: Counter = field(default_factory=Counter)
    synthetic: int = 0
    max_depth: int = 0  # the deepest generation of a reply in the rows (1: generated from human input)
    items: int = 0


# What the export reads of an item, in order (a tuple per item: the hot path of a million rows).
_ITEM_COLUMNS = ("id", "prompt_id", "completion_a_id", "completion_a__text", "completion_b_id",
                 "completion_b__text", "final_verdict", "final_strength", "adjudicated_by_id")
# Of the items with a generated reply only (a stream of its own: none for a project of human data).
_GENERATED_COLUMNS = ("id", "completion_a__generation__job_id", "completion_a__generation__endpoint_id",
                      "completion_b__generation__job_id", "completion_b__generation__endpoint_id",
                      "completion_a__generation__depth", "completion_b__generation__depth")


def _unpaired_lines(prompt_json: str, chosen: str, rejected: str, label_rejected: bool = False) -> tuple[str, str]:
    """Two UnpairedRow lines: the chosen reply labelled true (false for a both-bad pair) and the rejected
    one false."""
    head = f'{{"prompt": {prompt_json}, "completion": [{{"role": "assistant", "content": '
    first = "false" if label_rejected else "true"
    return (f'{head}{encode_basestring(chosen)}}}], "label": {first}}}\n',
            f'{head}{encode_basestring(rejected)}}}], "label": false}}\n')


def _sft_line(messages: object, chosen: str) -> str:
    """An SFTRow line: the prompt's messages and the chosen reply as one conversation."""
    conversation = [*messages, {"role": "assistant", "content": chosen}] if isinstance(messages, list) \
        else [{"role": "user", "content": str(messages)}, {"role": "assistant", "content": chosen}]
    return f'{{"messages": {_json(conversation)}}}\n'


PAIR_LINE_FORMATS = ("preference", "unpaired", "sft")


def pair_lines(*, projects: Sequence[Project], source: str, fmt: str = "preference", weighted: bool = False,
               filters: ExportFilters = NO_FILTERS, both_bad: bool = False, dropped: Counter | None = None,
               sources: Sources | None = None, synthetic_keep: tuple[int, int] | None = None,
               chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[str, Lineage]]:
    """Each row of a pairwise export as its JSON line (two lines an item for ``unpaired``), with its
    lineage, project by project in item order.

    ``fmt``: ``preference`` (TRL preference rows), ``unpaired`` (KTO: the chosen reply true, the rejected one
    false; with ``both_bad`` a both-bad pair gives both replies false), ``sft`` (the prompt and the chosen
    reply as messages). ``filters`` narrow the labels and judgments read and the rows kept. With
    ``dropped``, counts what the rules left out (gold, no_majority, tie, both_bad, low_agreement, weak,
    synthetic_cap, and "unlabeled"); with ``sources``, who and what made the rows. ``synthetic_keep`` =
    (kept, seen): of the ``seen`` rows with a generated reply, keep ``kept`` spread evenly (the cap of
    ``filters.max_synthetic_share``, counted by a first pass). Run it inside a transaction on PostgreSQL: a
    server-side cursor outside one is declared WITH HOLD, and the server copies the whole result first."""
    if fmt not in PAIR_LINE_FORMATS:
        raise ValueError(f"{fmt!r} is not a pairwise export format: one of {', '.join(PAIR_LINE_FORMATS)}")
    human, ai = source in ("human", "both"), source in ("ai", "both")
    raw = connection.vendor == "postgresql"
    synthetic_seen = 0
    min_agreement, min_strength = filters.min_agreement, filters.min_strength
    annotators = sources.annotators if sources is not None else Counter()
    for project in projects:
        if dropped is not None:
            gold = gold_labeled(project=project, source=source, filters=filters)
            if gold:
                dropped["gold"] += gold
        # On PostgreSQL the prompt comes as jsonb's text, written as it is when that is json.dumps' text too.
        messages_field = Cast("prompt__messages", TextField()) if raw else F("prompt__messages")
        items = PairItem.objects.filter(project=project, is_gold=False)
        if filters.synthesis_jobs:
            items = items.filter(Q(completion_a__generation__job_id__in=filters.synthesis_jobs)
                                 | Q(completion_b__generation__job_id__in=filters.synthesis_jobs))
        items = (items.order_by("id").annotate(messages_text=messages_field)
                 .values_list("messages_text", *_ITEM_COLUMNS).iterator(chunk_size=chunk_size))
        labels = _Merge(_labels_query(project, filters).filter(item__is_gold=False).order_by("item_id", "id")
                        .values_list("item_id", "id", "verdict", "strength", "annotator_id")
                        .iterator(chunk_size=chunk_size) if human else None)
        judgments = _Merge(_judgments_query(project, filters).filter(item__is_gold=False)
                           .order_by("item_id", "id")
                           .values_list("item_id", "id", "verdict", "probability", "judge_id", "template_version",
                                        "constitution_version").iterator(chunk_size=chunk_size) if ai else None)
        # A project of human data (most) has no generation: not even the query over its items is run.
        any_generated = Generation.objects.filter(completion__prompt__project=project).exists()
        generated = _Merge(None if not any_generated else PairItem.objects.filter(project=project, is_gold=False)
                           .filter(Q(completion_a__generation__isnull=False)
                                   | Q(completion_b__generation__isnull=False))
                           .order_by("id").values_list(*_GENERATED_COLUMNS).iterator(chunk_size=chunk_size))
        for (messages, item_id, prompt_id, a_id, a_text, b_id, b_text, final_verdict, final_strength,
             adjudicator) in _read_ahead(items):
            votes = labels.take(item_id) if human else []
            verdict: str | None = None
            by = "human"
            margin: float | None = None
            agreement = 1.0
            adjudicated = bool(final_verdict) and human
            if adjudicated:  # a reviewer's adjudication overrides the labels
                verdict = final_verdict
                margin = float(final_strength) if final_strength and verdict in _DECISIVE else None
            elif votes:
                verdict, graded, agreeing = _verdict(votes, weighted)
                margin = sum(graded) / len(graded) if graded else None
                agreement = agreeing / len(votes)
            basis = [vote[1] for vote in votes]
            judged = judgments.take(item_id) if ai else []
            if verdict is None and judged:
                verdict, _, agreeing = _verdict([(j[0], j[1], j[2], None) for j in judged], False)
                if verdict is not None:
                    probabilities = [j[3] for j in judged if j[2] == verdict]
                    by, basis = "ai", [j[1] for j in judged]
                    margin = abs(sum(probabilities) / len(probabilities) - 0.5) * 2
                    agreement = agreeing / len(judged)
            keep_both_bad = both_bad and verdict == "both_bad"
            if verdict not in _DECISIVE and not keep_both_bad:
                if dropped is not None:
                    if verdict is not None:
                        dropped["tie" if verdict == "tie" else "both_bad"] += 1
                    else:
                        dropped["no_majority" if votes or judged else "unlabeled"] += 1
                continue  # ties and both-bad say nothing about which to prefer
            if min_agreement is not None and agreement < min_agreement:
                if dropped is not None:
                    dropped["low_agreement"] += 1
                continue
            if min_strength is not None and by == "human" and (margin is None or margin < min_strength):
                if dropped is not None:
                    dropped["weak"] += 1
                continue
            generation = generated.take(item_id)
            synthetic = bool(generation)
            _, a_job, a_endpoint, b_job, b_endpoint, a_depth, b_depth = generation[0] if synthetic \
                else _NO_GENERATION
            if synthetic and synthetic_keep is not None:
                kept, seen = synthetic_keep
                j, synthetic_seen = synthetic_seen, synthetic_seen + 1
                if seen and (j + 1) * kept // seen == j * kept // seen:
                    if dropped is not None:
                        dropped["synthetic_cap"] += 1
                    continue
            chosen, rejected = (a_id, a_text, a_job, a_endpoint), (b_id, b_text, b_job, b_endpoint)
            if verdict == "B":
                chosen, rejected = rejected, chosen
            prompt_json = _jsonb_text_json(messages) if raw else None
            if fmt == "preference":
                line = preference_line(messages, chosen[1], rejected[1],
                                       None if margin is None else round(float(margin), 4), prompt_json=prompt_json)
            elif fmt == "unpaired":
                line, second = _unpaired_lines(prompt_json or _json(messages), chosen[1], rejected[1],
                                               label_rejected=keep_both_bad)
            else:
                if keep_both_bad:
                    continue  # no reply to learn from
                line = _sft_line(json.loads(messages) if raw else messages, chosen[1])
            jobs = tuple(sorted({j for j in (a_job, b_job) if j is not None})) if synthetic else ()
            if sources is not None:
                sources.items += 1
                if by == "human":
                    if adjudicated:
                        sources.adjudicated += 1
                        if adjudicator is not None:
                            sources.adjudicators[adjudicator] += 1
                    elif len(votes) == 1:
                        annotators[votes[0][4]] += 1
                    else:
                        annotators.update({vote[4] for vote in votes})
                else:
                    sources.judges.update({(j[4], j[5], j[6]) for j in judged})
                if synthetic:
                    sources.max_depth = max(sources.max_depth, a_depth or 0, b_depth or 0)
                    sources.synthetic += 1
                    sources.synthesis_jobs.update(jobs)
                    sources.endpoints.update({e for e in (a_endpoint, b_endpoint) if e is not None})
            entry = (item_id, prompt_id, chosen[0], rejected[0], by, tuple(basis), jobs)
            yield line, entry
            if fmt == "unpaired":
                yield second, entry


def preference_lines(*, project: Project, source: str, weighted: bool = False, dropped: Counter | None = None,
                     chunk_size: int = CHUNK_SIZE) -> Iterator[tuple[str, Lineage]]:
    """Each row of a preference export of one project as its JSON line, with its lineage (``pair_lines``)."""
    return pair_lines(projects=[project], source=source, weighted=weighted, dropped=dropped, chunk_size=chunk_size)


def lineage_dict(entry: Lineage) -> dict:
    """A lineage entry as the manifest keeps it (``preference_rows``' shape, and the synthesis jobs of the
    replies when there are any)."""
    item, prompt, chosen, rejected, by, basis, jobs = entry
    out = {"item": item, "prompt": prompt, "chosen": chosen, "rejected": rejected, "by": by,
           "labels" if by == "human" else "judgments": list(basis)}
    if jobs:
        out["synthesis_jobs"] = list(jobs)
    return out


def _lineage_line(entry: Lineage) -> str:
    item, prompt, chosen, rejected, by, basis, jobs = entry
    tail = f', "synthesis_jobs": [{", ".join(map(str, jobs))}]}}\n' if jobs else "}\n"
    return (f'{{"item": {item}, "prompt": {prompt}, "chosen": {chosen}, "rejected": {rejected}, "by": "{by}", '
            f'"{"labels" if by == "human" else "judgments"}": [{", ".join(map(str, basis))}]{tail}')


@dataclass
class ExportResult:
    """What a streamed export wrote: its rows, their sha256, the first lines and lineage entries kept
    (``keep``), and the lineage file's sha256 when one was written."""

    rows: int = 0
    sha256: str = ""
    head: list[str] = field(default_factory=list)
    lineage: list[dict] = field(default_factory=list)
    lineage_sha256: str = ""


def lines_write(lines: Iterable[tuple[str, Lineage]], *, out: IO[bytes] | None = None,
                lineage_out: IO[bytes] | None = None, keep: int = 0, keep_lineage: int = 0,
                progress: Callable[[int], None] | None = None) -> ExportResult:
    """Hash (and with ``out``, write) the lines as they come, in blocks; keep only the first ones.

    With ``lineage_out``, each row's lineage is written there as one JSON line too (hashed apart)."""
    result = ExportResult()
    digest, lineage_digest = hashlib.sha256(), hashlib.sha256()
    block: list[str] = []
    lineage_block: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal size
        data = "".join(block).encode()
        digest.update(data)
        if out is not None:
            out.write(data)
        block.clear()
        size = 0
        if lineage_out is not None:
            data = "".join(lineage_block).encode()
            lineage_digest.update(data)
            lineage_out.write(data)
            lineage_block.clear()

    rows = 0
    for line, entry in lines:
        if rows < keep:
            result.head.append(line)
        if rows < keep_lineage:
            result.lineage.append(lineage_dict(entry))
        rows += 1
        block.append(line)
        size += len(line)
        if lineage_out is not None:
            lineage_block.append(_lineage_line(entry))
        if size >= BLOCK_BYTES:
            flush()
            if progress is not None:
                progress(rows)
    flush()
    result.rows, result.sha256 = rows, digest.hexdigest()
    if lineage_out is not None:
        result.lineage_sha256 = lineage_digest.hexdigest()
    return result


def synthetic_quota(*, projects: Sequence[Project], source: str, fmt: str = "preference", weighted: bool = False,
                    filters: ExportFilters, both_bad: bool = False) -> tuple[int, int]:
    """(kept, seen): how many of the rows with a generated reply ``filters.max_synthetic_share`` allows, of
    how many the other filters keep; a first pass over the rows (hashing nothing)."""
    counting = Sources()
    for _ in pair_lines(projects=projects, source=source, fmt=fmt, weighted=weighted, filters=filters,
                        both_bad=both_bad, sources=counting):
        pass
    share, natural = filters.max_synthetic_share, counting.items - counting.synthetic
    if share is None or share >= 1:
        return counting.synthetic, counting.synthetic
    return min(counting.synthetic, math.floor(share * natural / (1 - share) + 1e-9)), counting.synthetic


def pair_export(*, projects: Sequence[Project], source: str, fmt: str = "preference", weighted: bool = False,
                filters: ExportFilters = NO_FILTERS, both_bad: bool = False, dropped: Counter,
                sources: Sources | None = None, path: Path | None = None, lineage_path: Path | None = None,
                keep: int = 0, keep_lineage: int = 0, progress: Callable[[int], None] | None = None) -> ExportResult:
    """Stream a pairwise export (``pair_lines``): to ``path`` (and its lineage to ``lineage_path``) when
    given, else only hashed and counted (a plan). ``progress(rows)`` is called as blocks are written. Files
    half written are removed if anything fails. A cap on the synthetic share costs a first pass."""
    quota = None
    if filters.max_synthetic_share is not None:
        quota = synthetic_quota(projects=projects, source=source, fmt=fmt, weighted=weighted, filters=filters,
                                both_bad=both_bad)
    lines = pair_lines(projects=projects, source=source, fmt=fmt, weighted=weighted, filters=filters,
                       both_bad=both_bad, dropped=dropped, sources=sources, synthetic_keep=quota)
    opened = [p for p in (path, lineage_path) if p is not None]
    try:
        with contextlib.ExitStack() as stack:
            out, lineage_out = (stack.enter_context(open(p, "wb")) if p is not None else None  # noqa: SIM115
                                for p in (path, lineage_path))
            return lines_write(lines, out=out, lineage_out=lineage_out, keep=keep, keep_lineage=keep_lineage,
                               progress=progress)
    except BaseException:
        for written in opened:
            written.unlink(missing_ok=True)
        raise


class RowsHead(Sequence):
    """The rows of a streamed plan: as many as the export has (``len``), of which only the first are kept.

    Indexing and slicing reach the kept rows; iterating or comparing needs them all, so it works only when
    every row was kept (a small export)."""

    def __init__(self, head: list, total: int):
        self._head, self._total = head, total

    def __len__(self) -> int:
        return self._total

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(self._total)
            if step > 0 and max(start, stop) > len(self._head) and start < stop:
                raise IndexError(f"a plan keeps the first {len(self._head)} of {self._total} rows")
            return self._head[index]
        position = index + self._total if index < 0 else index
        if not 0 <= position < len(self._head):
            raise IndexError(f"a plan keeps the first {len(self._head)} of {self._total} rows")
        return self._head[position]

    @property
    def complete(self) -> bool:
        return len(self._head) == self._total

    def __iter__(self):
        if not self.complete:
            raise TypeError(f"a plan keeps the first {len(self._head)} of {self._total} rows; stream the export")
        return iter(self._head)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowsHead | list) and self.complete:
            return self._head == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RowsHead {len(self._head)} of {self._total}>"
