"""The problem bank: problems with verifiable answers, their import, and the reads that list and export them.

A file (JSON Lines, a JSON array or Parquet, gzip or not) holds one problem a record, in the shapes public
sets use:

- **math** (GSM8K, MATH): ``question`` (or ``problem``) and ``answer``. A GSM8K answer is a worked solution
  ending in ``#### 42``: the final answer is what follows ``####``, the reasoning is kept in
  ``metadata["solution"]``. A MATH record has a ``solution`` with a ``\\boxed{}`` answer instead.
- **code** (MBPP, HumanEval): ``prompt`` (or ``text``, MBPP's description) and ``tests`` (a list of assert
  lines), MBPP's ``test_list`` (with ``test_setup_code``), or HumanEval's ``test`` (a ``check(candidate)``
  function) with its ``entry_point``.

Optional ``tags`` (a list) and ``split`` ("train"/"test") per record; every other field is kept in
``metadata``. The import is all or nothing: the first bad record stops it with its file, line and field, and
nothing is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet

from annotate.models import Project
from prefdata.readers.mapped import table_rows
from prefdata.readers.stream import ReadError
from synth.models import Problem

KINDS = ("math", "code")
SPLITS = tuple(Problem.Split.values)
_QUESTION_FIELDS = ("question", "problem", "prompt", "text")
_TESTS_FIELDS = ("tests", "test_list", "test")
# Fields a rule reads: the rest of a record goes to metadata.
_READ = {*_QUESTION_FIELDS, *_TESTS_FIELDS, "answer", "solution", "entry_point", "tags", "split",
         "test_setup_code"}
_GSM8K_FINAL = re.compile(r"\n?\s*####\s*(.+?)\s*$", re.DOTALL)
_TAG = re.compile(r"^[\w.:+-]{1,50}$")
MAX_TAGS = 20


@dataclass(frozen=True)
class ImportSummary:
    """What an import stored: ``count`` problems, of which ``math`` and ``code``."""

    count: int
    math: int
    code: int


def tags_parse(text: str | Sequence[str] | None, *, field: str = "tags") -> list[str]:
    """Tags from "a,b" or a list, stripped, deduplicated in order; ValueError naming ``field`` for a tag
    that is not a short word (letters, digits, ``_ . : + -``)."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else text
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{field}: expected a list of tags")
    tags: list[str] = []
    for item in items:
        if not isinstance(item, str) or not _TAG.match(item.strip()):
            raise ValueError(f"{field}: {item!r} is not a tag (a word of at most 50 letters, digits or _.:+-)")
        if item.strip() not in tags:
            tags.append(item.strip())
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{field}: at most {MAX_TAGS} tags")
    return tags


def _text(row: dict, name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{name}: expected a text, not {type(value).__name__}")
    return str(value)


def problem_from_row(row: dict) -> dict:
    """The fields of a Problem from one record (see the module docstring); ValueError "field: message"."""
    question_field = next((f for f in _QUESTION_FIELDS if row.get(f) not in (None, "")), None)
    if question_field is None:
        raise ValueError("question: missing (a question, problem, prompt or text field)")
    question = _text(row, question_field) or ""
    metadata: dict = {k: v for k, v in row.items() if k not in _READ}
    tests_field = next((f for f in _TESTS_FIELDS if row.get(f) not in (None, "", [])), None)
    tests: list[str] | str | None = None
    entry_point = _text(row, "entry_point") or ""
    if tests_field is not None:
        value = row[tests_field]
        if isinstance(value, str):
            tests = value
        elif isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
            tests = [t for t in value if t.strip()]
        else:
            raise ValueError(f"{tests_field}: expected a list of assert lines or a check function's source")
        if isinstance(tests, str) and "def check(" in tests and not entry_point:
            raise ValueError("entry_point: HumanEval tests (def check(candidate)) need the function's name")
        setup = _text(row, "test_setup_code")
        if setup:
            metadata["setup"] = setup
    answer = _text(row, "answer") or ""
    solution = _text(row, "solution")
    if solution:
        metadata["solution"] = solution
    final = _GSM8K_FINAL.search(answer)
    if final:
        metadata["solution"] = answer[: final.start()].strip()
        answer = final.group(1).strip()
    elif not answer and solution and tests is None:
        from prefdata.verifiers.math import reference_answer

        answer = reference_answer(solution) if "\\boxed" in solution or "####" in solution else ""
    if tests is None and not answer.strip():
        raise ValueError("answer: missing (a math problem needs its final answer; a code problem its tests)")
    tags = tags_parse(row.get("tags"), field="tags")
    split = row.get("split") or Problem.Split.TRAIN
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, not {split!r}")
    return {"question": question, "answer": answer.strip(), "tests": tests, "entry_point": entry_point,
            "tags": tags, "split": split, "metadata": metadata}


def _problems_read(path: str | Path, name: str) -> Iterator[dict]:
    for line, row in table_rows(path, name):
        try:
            yield problem_from_row(row)
        except (ValueError, KeyError) as exc:
            message = str(exc)
            field = message.split(":", 1)[0] if ":" in message else "(row)"
            raise ReadError(path=name, line=line, field=field, message=message) from None


def problems_import(*, project: Project, path: str | Path, tags: Sequence[str] = (), split: str | None = None,
                    display_name: str | None = None) -> ImportSummary:
    """Store every problem of the file in ``project``, or none: ValidationError({"file": "<file>, line n,
    field 'f': ..."}) at the first bad record. ``tags`` are added to each record's own; ``split``, when
    given, replaces each record's."""
    name = display_name or Path(path).name
    if split is not None and split not in SPLITS:
        raise ValidationError({"split": f"split: expected one of {', '.join(SPLITS)}, not {split!r}"})
    try:
        extra = tags_parse(list(tags))
    except ValueError as exc:
        raise ValidationError({"tags": str(exc)}) from None
    try:
        rows = list(_problems_read(path, name))
    except ReadError as exc:
        raise ValidationError({"file": str(exc)}) from None
    if not rows:
        raise ValidationError({"file": f"{name}: no problem in the file"})
    problems = []
    for row in rows:
        row_tags = list(dict.fromkeys([*row.pop("tags"), *extra]))
        if split is not None:
            row["split"] = split
        problems.append(Problem(project=project, source=name[:200], tags=row_tags,
                                tag_index="," + ",".join(row_tags) + "," if row_tags else "", **row))
    with transaction.atomic():
        Problem.objects.bulk_create(problems, batch_size=1000)
    code = sum(1 for p in problems if p.tests is not None)
    return ImportSummary(count=len(problems), math=len(problems) - code, code=code)


def problems_upload(*, project: Project, upload, tags: Sequence[str] = (), split: str | None = None) -> ImportSummary:
    """``problems_import`` of an uploaded file (written to a temporary file first: Parquet needs to seek)."""
    import tempfile

    suffix = Path(upload.name or "").suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        for piece in upload.chunks():
            handle.write(piece)
        handle.flush()
        return problems_import(project=project, path=handle.name, tags=tags, split=split,
                               display_name=Path(upload.name or "upload").name)


# -- reads -------------------------------------------------------------------------------------------------------


def problems_filter(*, project: Project, tag: str = "", split: str = "", kind: str = "",
                    q: str = "") -> QuerySet[Problem]:
    """The project's problems with a tag, of a split, of a kind ("math"/"code") and whose question holds
    ``q`` (each filter off when empty); the caller has checked the user may see the project."""
    problems = Problem.objects.filter(project=project)
    if tag:
        problems = problems.filter(tag_index__contains=f",{tag},")
    if split:
        problems = problems.filter(split=split)
    if kind == "math":
        problems = problems.filter(tests__isnull=True)
    elif kind == "code":
        problems = problems.filter(tests__isnull=False)
    if q:
        problems = problems.filter(Q(question__icontains=q) | Q(answer__iexact=q))
    return problems.order_by("id")


def problems_tags(*, project: Project) -> list[str]:
    """Every tag used in the project, sorted (the page's tag filter)."""
    found: set[str] = set()
    for tags in Problem.objects.filter(project=project).values_list("tags", flat=True).distinct():
        found.update(tags or [])
    return sorted(found)


def problems_select(*, project: Project, tags: Sequence[str] = (), split: str | None = None) -> QuerySet[Problem]:
    """The project's problems carrying every one of ``tags`` and of ``split`` (None: both)."""
    problems = Problem.objects.filter(project=project)
    for tag in tags:
        problems = problems.filter(tag_index__contains=f",{tag},")
    if split:
        problems = problems.filter(split=split)
    return problems.order_by("id")


def problem_messages(problem: Problem) -> list[dict]:
    """The problem as a user message list (a prompt-only row's ``prompt``)."""
    return [{"role": "user", "content": problem.question}]


def problems_for_export(*, project: Project, tags: Sequence[str] = (), split: str | None = None) -> Iterator[dict]:
    """Prompt-only rows of the project's problems (GRPO/RLVR snapshots): {"id", "prompt" (a user message
    list), "answer" (None for code), "tests" (None for math; a list of sources, or a HumanEval check
    function's source), "entry_point" (None for math), "split", "tags"}."""
    for problem in problems_select(project=project, tags=tags, split=split).iterator(chunk_size=2000):
        yield {"id": problem.pk, "prompt": problem_messages(problem), "answer": problem.answer or None,
               "tests": problem.tests, "entry_point": problem.entry_point or None, "split": problem.split,
               "tags": list(problem.tags)}
