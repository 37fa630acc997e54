"""Import step items (a problem and a solution split into steps, for process reward models) from files:
our own JSONL, PRM800K, BIG-Bench Mistake and Math-Shepherd.

Same contract as the pair importers (``annotate.importers``): the file is read as a stream and stored
``chunk_size`` records at a time (constant memory), all chunks in ONE transaction, so a bad record
anywhere gives an ``ImportError_`` naming the file, the 1-based line and the field, and stores nothing.

Every record becomes one Prompt (the problem as a one-message conversation, ``source`` = the file name)
and one StepItem (``split_rule="given"``: the steps come from the file). Where the file carries step
labels they become one StepLabel with ``annotator=None``, ``source="auto"`` and
``source_name="<format>:<file name>"`` (a dataset's labels, human or not, have no annotator here, and
``source="human"`` requires one). Ratings are +1 (correct), 0 (neutral), -1 (wrong) or None (not labeled).

``steps_split`` splits an unsplit solution by one of the ``StepItem.SplitRule`` rules.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from annotate.importers import (
    ImportError_,
    ImportResult,
    _conversation,
    _Counter,
    _json_clean,
    _jsonl_records,
    _model_name,
    _RowError,
    _to_import_error,
)
from annotate.models import Project, Prompt, StepItem, StepLabel
from annotate.text import text_clean

STEP_FORMATS = {
    "auto": "detect from the file's first record",
    "steps": 'our JSONL: {"prompt" (string or conversation), "steps": [str], optional "ratings": [1|0|-1|null], '
             '"reference_answer", "ground_truth_solution", "model", "metadata", "finish_reason", "outcome"}',
    "prm800k": "PRM800K JSONL (OpenAI, one labeled solution a line): question.problem, label.steps[].completions[]"
               ".rating, chosen_completion, human_completion, label.finish_reason",
    "bbm": "BIG-Bench Mistake JSONL: {input, steps, mistake_index (0-based or null), answer, target}",
    "math-shepherd": 'Math-Shepherd JSONL: {input, label, optional task}: every step of "input" ends with "ки", '
                     'which "label" replaces with "+" or "-"',
}
DEFAULT_STEP_CHUNK_SIZE = 2_000

RATINGS = (1, 0, -1, None)
PRM800K_FINISH_REASONS = {
    "solution": StepLabel.FinishReason.SOLUTION,
    "found_error": StepLabel.FinishReason.FOUND_ERROR,
    "give_up": StepLabel.FinishReason.GAVE_UP,  # PRM800K's spelling
    "gave_up": StepLabel.FinishReason.GAVE_UP,
    "bad_problem": StepLabel.FinishReason.BAD_PROBLEM,
}
MATH_SHEPHERD_TAG = "ки"
_MATH_SHEPHERD_FIRST_STEP = re.compile(r"step\s*1\s*:", re.IGNORECASE)
_SOURCE_MAX = Prompt._meta.get_field("source").max_length
_SOURCE_NAME_MAX = StepLabel._meta.get_field("source_name").max_length


@dataclass(slots=True)
class ParsedStepLabel:
    ratings: list[int | None]
    finish_reason: str = StepLabel.FinishReason.SOLUTION
    outcome: str = ""
    flags: list[int] = field(default_factory=list)


@dataclass(slots=True)
class ParsedStepItem:
    prompt: list[dict[str, str]]
    steps: list[str]
    solution_text: str = ""
    reference_answer: str = ""
    ground_truth_solution: str = ""
    model_name: str = ""
    prompt_metadata: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    label: ParsedStepLabel | None = None
    line: int = 0


# -- splitting a solution into steps ------------------------------------------------------------------------

# "Step 3:" (also "step 3." / "Step 3)"), or "3." / "3)" followed by a space, at the start of a line.
_NUMBERED = re.compile(r"^[ \t]*(?:(?P<step>step[ \t]*(?P<k1>\d+)[ \t]*[:.)])|(?P<k2>\d+)(?P<mark>[.)])(?=\s))",
                       re.IGNORECASE | re.MULTILINE)
# Words whose final period ends no sentence.
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "fig.",
                            "eq.", "no.", "approx.", "cf.", "resp."})
_SENTENCE_END = re.compile(r"""(?<=[.!?])["')\]]*\s+""")


def steps_split(text: str, rule: str) -> list[str]:
    """The steps of ``text`` by ``rule``; every step is stripped and empty ones are dropped.

    - ``blank_lines``: paragraphs, separated by lines that are empty or hold only spaces.
    - ``lines``: every non-blank line.
    - ``numbered``: a step starts at each line that begins with a number: "Step k:" (any case, also
      "Step k." / "Step k)") or "k." / "k)" followed by a space. The first marker found sets the style
      ("Step k", "k." or "k)"), and only markers of that style numbered one more than the previous one
      start a step, so a list inside a step ("1. ... 2. ...", under "Step 2:") stays in it. The marker is
      kept in the step's text; text before the first marker is a step of its own (nothing is dropped).
      No marker: one step.
    - ``sentences``: a step ends after ".", "!" or "?" (and any closing quote or bracket) followed by white
      space, unless the word is a common abbreviation (e.g., i.e., Dr., ...) or the next word starts in
      lower case; a blank line also ends a step. A heuristic: decimals ("3.5") are safe, "Fig. 2" is kept
      whole, an initial ("J. Smith") is split.
    Raises ValueError for another rule (``given`` steps come as a list, not from text).
    """
    if rule == StepItem.SplitRule.BLANK_LINES:
        parts = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    elif rule == StepItem.SplitRule.LINES:
        parts = text.splitlines()
    elif rule == StepItem.SplitRule.NUMBERED:
        parts = _numbered_split(text)
    elif rule == StepItem.SplitRule.SENTENCES:
        parts = [s for paragraph in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
                 for s in _sentences_split(paragraph)]
    else:
        raise ValueError(f"unknown split rule {rule!r}; known: blank_lines, numbered, lines, sentences")
    return [p.strip() for p in parts if p.strip()]


def _numbered_split(text: str) -> list[str]:
    # 1. Keep the markers that continue the numbering in the style of the first one.
    starts, style, expected = [], None, None
    for match in _NUMBERED.finditer(text):
        this_style = "step" if match.group("step") else match.group("mark")
        k = int(match.group("k1") or match.group("k2"))
        if style is None:
            style, expected = this_style, k
        if this_style == style and k == expected:
            starts.append(match.start())
            expected = k + 1
    # 2. Cut before each of them.
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _sentences_split(paragraph: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start:match.start()].rstrip("\"')]")
        last_word = before.rsplit(None, 1)[-1].lstrip("\"'([").lower() if before.split() else ""
        following = paragraph[match.end():match.end() + 1]
        if last_word in _ABBREVIATIONS or (following and following.islower()):
            continue
        sentences.append(paragraph[start:match.end()])
        start = match.end()
    sentences.append(paragraph[start:])
    return sentences


# -- one record to a step item ------------------------------------------------------------------------------


def _text(value: object, field_name: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _RowError(field_name, f"{field_name}: expected a string")
    value = text_clean(value)
    if required and not value.strip():
        raise _RowError(field_name, f"{field_name}: empty")
    return value


def _steps(value: object, field_name: str = "steps") -> list[str]:
    if not isinstance(value, list) or not value:
        raise _RowError(field_name, f"{field_name}: expected a non-empty list of strings")
    return [_text(step, f"{field_name}[{i}]").strip() for i, step in enumerate(value)]


def _rating(value: object, field_name: str) -> int | None:
    # bool is an int in Python: true would pass as 1.
    if isinstance(value, bool) or value not in RATINGS:
        raise _RowError(field_name, f"{field_name}: {value!r} is not one of 1, 0, -1, null")
    return None if value is None else int(value)  # type: ignore[call-overload]


def _choice(value: object, field_name: str, choices: type) -> str:
    if value is None:
        return ""
    if value not in choices.values:
        raise _RowError(field_name, f"{field_name}: {value!r} is not one of {choices.values}")
    return str(value)


def _metadata(value: object, field_name: str = "metadata") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _RowError(field_name, f"{field_name}: expected an object")
    return value


def _problem(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text.strip()}]


def _steps_row(row: dict, name: str) -> ParsedStepItem:
    """Our own format."""
    if "prompt" not in row:
        raise KeyError("prompt")
    prompt = _conversation(row["prompt"])
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        raise _RowError("prompt", "prompt: no user message with the problem")
    steps = _steps(row.get("steps"))
    item = ParsedStepItem(
        prompt, steps, solution_text="\n\n".join(steps),
        reference_answer=_text(row.get("reference_answer"), "reference_answer", required=False),
        ground_truth_solution=_text(row.get("ground_truth_solution"), "ground_truth_solution", required=False),
        model_name=_model_name(row.get("model"), "model"), metadata=_metadata(row.get("metadata")))
    ratings = row.get("ratings")
    if ratings is not None:
        if not isinstance(ratings, list) or len(ratings) != len(steps):
            raise _RowError("ratings", f"ratings: expected a list of {len(steps)} ratings, one per step")
        ratings = [_rating(r, f"ratings[{i}]") for i, r in enumerate(ratings)]
        finish_reason = _choice(row.get("finish_reason"), "finish_reason", StepLabel.FinishReason) or (
            StepLabel.FinishReason.FOUND_ERROR if -1 in ratings else StepLabel.FinishReason.SOLUTION)
        item.label = ParsedStepLabel(ratings, finish_reason, _choice(row.get("outcome"), "outcome",
                                                                     StepLabel.Outcome))
    return item


def _prm800k_row(row: dict, name: str) -> ParsedStepItem:
    """One labeled solution of PRM800K (Lightman et al. 2023, "Let's Verify Step by Step").

    Each ``label.steps[i]`` offers candidate ``completions`` (rated +1/0/-1/null). The step taken is
    ``human_completion`` when a labeler wrote one (phase 1), else ``completions[chosen_completion]``, else
    (labeling stopped at that step, chosen is null) the first completion, which in phase 2 is the
    pre-generated step. A labeler's own step has no rating of its own in most rows: it is taken as
    correct (+1), since it was written to continue the solution where no candidate was good. The
    candidates not taken are kept in ``metadata["alternatives"]``. A row with no labeled step is skipped.
    """
    question = row.get("question")
    if not isinstance(question, dict):
        raise _RowError("question", "question: expected an object")
    problem = _text(question.get("problem"), "question.problem")
    label = row.get("label")
    if not isinstance(label, dict):
        raise _RowError("label", "label: expected an object")
    label_steps = label.get("steps")
    if not isinstance(label_steps, list):
        raise _RowError("label.steps", "label.steps: expected a list")
    steps: list[str] = []
    ratings: list[int | None] = []
    flags: list[int] = []
    alternatives: list[dict[str, Any]] = []
    human_steps: list[int] = []
    for i, step in enumerate(label_steps):
        where = f"label.steps[{i}]"
        if not isinstance(step, dict):
            raise _RowError(where, f"{where}: expected an object")
        completions = step.get("completions") or []
        if not isinstance(completions, list):
            raise _RowError(f"{where}.completions", f"{where}.completions: expected a list")
        candidates = []
        for j, completion in enumerate(completions):
            at = f"{where}.completions[{j}]"
            if not isinstance(completion, dict):
                raise _RowError(at, f"{at}: expected an object")
            candidates.append({"text": _text(completion.get("text"), f"{at}.text", required=False),
                               "rating": _rating(completion.get("rating"), f"{at}.rating"),
                               "flagged": completion.get("flagged")})
        human, chosen = step.get("human_completion"), step.get("chosen_completion")
        used: int | None = None
        if human is not None:
            if isinstance(human, str):
                text, rating, flagged = _text(human, f"{where}.human_completion"), None, None
            elif isinstance(human, dict):
                text = _text(human.get("text"), f"{where}.human_completion.text")
                rating = _rating(human.get("rating"), f"{where}.human_completion.rating")
                flagged = human.get("flagged")
            else:
                raise _RowError(f"{where}.human_completion", f"{where}.human_completion: expected a string or object")
            rating = 1 if rating is None else rating
            human_steps.append(i)
        else:
            if chosen is None:
                used = 0
            elif isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(candidates):
                raise _RowError(f"{where}.chosen_completion",
                                f"{where}.chosen_completion: {chosen!r} is not the index of one of its "
                                f"{len(candidates)} completions")
            else:
                used = chosen
            if not candidates:
                raise _RowError(f"{where}.completions", f"{where}.completions: no completion and no human_completion")
            text, rating, flagged = candidates[used]["text"], candidates[used]["rating"], candidates[used]["flagged"]
            if not text.strip():
                raise _RowError(f"{where}.completions[{used}].text", f"{where}.completions[{used}].text: empty")
        steps.append(text.strip())
        ratings.append(rating)
        if flagged:
            flags.append(i)
        alternatives.extend({"step": i, **c} for j, c in enumerate(candidates) if j != used)

    finish = label.get("finish_reason")
    if finish is None:
        finish_reason = StepLabel.FinishReason.FOUND_ERROR if -1 in ratings else StepLabel.FinishReason.SOLUTION
    elif finish in PRM800K_FINISH_REASONS:
        finish_reason = PRM800K_FINISH_REASONS[finish]
    else:
        raise _RowError("label.finish_reason", f"label.finish_reason: {finish!r} is not one of "
                                               f"{sorted(set(PRM800K_FINISH_REASONS) - {'gave_up'})}")
    metadata: dict[str, Any] = {k: row[k] for k in ("labeler", "timestamp", "generation",
                                                    "is_quality_control_question", "is_initial_screening_question")
                                if row.get(k) is not None}
    for key in ("pre_generated_answer", "pre_generated_verifier_score"):
        if question.get(key) is not None:
            metadata[key] = question[key]
    pre_generated = question.get("pre_generated_steps")
    if isinstance(pre_generated, list) and pre_generated != steps:
        metadata["pre_generated_steps"] = pre_generated  # the whole solution, where labeling stopped early
    if label.get("total_time") is not None:
        metadata["total_time_ms"] = label["total_time"]
    if alternatives:
        metadata["alternatives"] = alternatives
    if human_steps:
        metadata["human_steps"] = human_steps
    if isinstance(label.get("finish_reason"), str):
        metadata["finish_reason"] = label["finish_reason"]
    return ParsedStepItem(
        _problem(problem), steps, solution_text="\n\n".join(steps),
        reference_answer=_text(question.get("ground_truth_answer"), "question.ground_truth_answer", required=False),
        ground_truth_solution=_text(question.get("ground_truth_solution"), "question.ground_truth_solution",
                                    required=False),
        prompt_metadata={k: question[k] for k in ("subject", "level", "unique_id") if question.get(k) is not None},
        metadata=metadata, label=ParsedStepLabel(ratings, finish_reason, "", flags))


def _bbm_row(row: dict, name: str) -> ParsedStepItem:
    """BIG-Bench Mistake (Tyen et al. 2023): people marked the first step with a logical mistake.

    The steps before ``mistake_index`` are +1, the mistake step -1, and the later ones None (not labeled,
    as in PRM800K); with no mistake (null) every step is +1. The outcome is whether ``answer`` equals
    ``target`` (both stripped), unknown when either is missing.
    """
    problem = _text(row.get("input"), "input")
    steps = _steps(row.get("steps"))
    if "mistake_index" not in row:
        raise KeyError("mistake_index")
    mistake = row["mistake_index"]
    if mistake is None:
        ratings: list[int | None] = [1] * len(steps)
    elif isinstance(mistake, bool) or not isinstance(mistake, int) or not 0 <= mistake < len(steps):
        raise _RowError("mistake_index", f"mistake_index: {mistake!r} is not null or a step index "
                                         f"(0 to {len(steps) - 1})")
    else:
        ratings = [1] * mistake + [-1] + [None] * (len(steps) - mistake - 1)
    answer = _text(row.get("answer"), "answer", required=False)
    target = _text(row.get("target"), "target", required=False)
    outcome = ""
    if answer.strip() and target.strip():
        outcome = StepLabel.Outcome.CORRECT if answer.strip() == target.strip() else StepLabel.Outcome.INCORRECT
    finish_reason = StepLabel.FinishReason.SOLUTION if mistake is None else StepLabel.FinishReason.FOUND_ERROR
    metadata = {"mistake_index": mistake, **({"answer": answer} if row.get("answer") is not None else {})}
    return ParsedStepItem(_problem(problem), steps, solution_text="\n\n".join(steps), reference_answer=target,
                          metadata=metadata, label=ParsedStepLabel(ratings, finish_reason, outcome))


def _math_shepherd_row(row: dict, name: str) -> ParsedStepItem:
    """Math-Shepherd (Wang et al. 2023): labels from Monte-Carlo rollouts, no human in the loop.

    ``input`` is the problem followed by the solution, each step ending with the marker "ки"; ``label`` is
    the same text with each marker replaced by "+" or "-". Rules:
    1. The steps are the pieces of ``input`` that end with a marker (stripped, the "Step k:" prefix kept);
       text after the last marker must be blank.
    2. The problem is the text before the first "Step 1:" (any case), which must come before the first
       marker: where it is missing the row is refused, rather than cut at a guess.
    3. A marker at offset p of ``input`` (the k-th, from 0) is at offset p - k of ``label`` (each marker of
       two characters became one): "+" is +1, "-" is -1.
    4. The last step holds the final answer and its label says whether that answer reaches the reference
       (Math-Shepherd's hard estimation), so it gives the outcome.
    """
    text = _text(row.get("input"), "input")
    label = _text(row.get("label"), "label")
    positions = [m.start() for m in re.finditer(MATH_SHEPHERD_TAG, text)]
    if not positions:
        raise _RowError("input", f'input: no step marker "{MATH_SHEPHERD_TAG}"')
    if len(label) != len(text) - len(positions) * (len(MATH_SHEPHERD_TAG) - 1):
        raise _RowError("label", "label: not the input with each step marker replaced by + or -")
    ratings: list[int | None] = []
    for k, position in enumerate(positions):
        sign = label[position - k]
        if sign not in "+-":
            raise _RowError("label", f"label: step {k + 1}: expected + or - where the input has its marker, "
                                     f"found {sign!r}")
        ratings.append(1 if sign == "+" else -1)
    pieces = text.split(MATH_SHEPHERD_TAG)
    if pieces[-1].strip():
        raise _RowError("input", f'input: text after the last step marker "{MATH_SHEPHERD_TAG}"')
    first = _MATH_SHEPHERD_FIRST_STEP.search(pieces[0])
    if first is None:
        raise _RowError("input", 'input: no "Step 1:" before the first step marker, so the problem cannot be told '
                                 "from the solution")
    problem = pieces[0][:first.start()].strip()
    if not problem:
        raise _RowError("input", "input: no problem before \"Step 1:\"")
    steps = [pieces[0][first.start():].strip(), *(p.strip() for p in pieces[1:-1])]
    for i, step in enumerate(steps):
        if not step:
            raise _RowError("input", f"input: step {i + 1} is empty")
    task = row.get("task")
    return ParsedStepItem(
        _problem(problem), steps, solution_text="\n".join(steps),
        prompt_metadata={"task": task} if task is not None else {},
        label=ParsedStepLabel(
            ratings,
            StepLabel.FinishReason.FOUND_ERROR if -1 in ratings else StepLabel.FinishReason.SOLUTION,
            StepLabel.Outcome.CORRECT if ratings[-1] == 1 else StepLabel.Outcome.INCORRECT))


_ROW_PARSERS: dict[str, Callable[[dict, str], ParsedStepItem | None]] = {
    "steps": _steps_row, "prm800k": _prm800k_row, "bbm": _bbm_row, "math-shepherd": _math_shepherd_row,
}


# -- files to step items ------------------------------------------------------------------------------------


def _detect(row: object) -> str:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    if isinstance(row.get("label"), dict) and "question" in row:
        return "prm800k"
    if "mistake_index" in row and "steps" in row:
        return "bbm"
    if "prompt" in row and "steps" in row:
        return "steps"
    if "input" in row and "label" in row:
        return "math-shepherd"
    raise ValueError("unknown format: expected prompt/steps, PRM800K question/label, BIG-Bench Mistake "
                     "input/steps/mistake_index or Math-Shepherd input/label")


def step_format_detect(path: str | Path, *, display_name: str | None = None) -> str:
    """The format of a JSON Lines file of step items, from the keys of its first record."""
    name = display_name or Path(path).name
    for line_no, row in _jsonl_records(path, name):
        try:
            return _detect(row)
        except ValueError as exc:
            raise ImportError_(path=name, line=line_no, field="(row)", message=str(exc)) from None
    raise ImportError_(path=name, line=0, field="(file)", message="the file has no rows")




def step_file_parse(path: str | Path, fmt: str = "auto", *, display_name: str | None = None,
                    _counter: _Counter | None = None) -> Iterator[ParsedStepItem]:
    """The step items of a file, one at a time (lazily); raises ImportError_ at the first bad record."""
    name = display_name or Path(path).name
    counter = _counter if _counter is not None else _Counter()
    if fmt == "auto":
        fmt = step_format_detect(path, display_name=name)
    parser = _ROW_PARSERS.get(fmt)
    if parser is None:
        raise ImportError_(path=name, line=0, field="(format)",
                           message=f"unknown format {fmt!r}; known: {', '.join(STEP_FORMATS)}")
    return _read(path, name, parser, counter)


def _read(path: str | Path, name: str, parser: Callable[[dict, str], ParsedStepItem | None],
          counter: _Counter) -> Iterator[ParsedStepItem]:
    for line_no, row in _jsonl_records(path, name):
        counter.rows += 1
        try:
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
            item = parser(row, name)
        except (KeyError, ValueError, TypeError) as exc:
            raise _to_import_error(exc, path=name, line=line_no) from None
        if item is None or not item.steps:
            continue
        item.line = line_no
        yield item


def _write(chunk: list[ParsedStepItem], *, project: Project, source: str, source_name: str,
           import_job_id: int | None = None) -> None:
    prompts = Prompt.objects.bulk_create([
        Prompt(project=project, messages=p.prompt, source=source, import_job_id=import_job_id,
               metadata=_json_clean({**p.prompt_metadata, "source_line": p.line})) for p in chunk])
    items = StepItem.objects.bulk_create([
        StepItem(project=project, prompt=prompt, steps=p.steps, solution_text=p.solution_text,
                 split_rule=StepItem.SplitRule.GIVEN, reference_answer=p.reference_answer,
                 ground_truth_solution=p.ground_truth_solution, model_name=p.model_name,
                 metadata=_json_clean(p.metadata) if p.metadata else {})
        for p, prompt in zip(chunk, prompts, strict=True)])
    StepLabel.objects.bulk_create([
        StepLabel(item=item, annotator=None, source=StepLabel.Source.AUTO, source_name=source_name,
                  ratings=p.label.ratings, flags=p.label.flags, finish_reason=p.label.finish_reason,
                  outcome=p.label.outcome)
        for p, item in zip(chunk, items, strict=True) if p.label is not None])


def step_items_import(*, project: Project, path: str | Path, fmt: str = "auto", display_name: str | None = None,
                      progress: Callable[[int], None] | None = None,
                      chunk_size: int = DEFAULT_STEP_CHUNK_SIZE, import_job_id: int | None = None) -> ImportResult:
    """Import a file of step items (and their labels) into a steps project: all of it or, on any error, none.

    The file is read and stored ``chunk_size`` records at a time (one chunk in memory), all in one
    transaction. ``progress(rows)`` is called after each stored chunk with the lines read so far; it runs
    inside the import's transaction (see ``annotate.importers.items_import``). ``ImportResult.rows`` counts
    the records read, ``items`` the step items stored (a PRM800K row with no labeled step stores none).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    name = display_name or Path(path).name
    if project.task_kind != Project.TaskKind.STEPS:
        raise ImportError_(path=name, line=0, field="(project)",
                           message=f"project {project.name!r} is not a step-labels project")
    if fmt == "auto":
        fmt = step_format_detect(path, display_name=name)
    counter = _Counter()
    records = step_file_parse(path, fmt, display_name=name, _counter=counter)
    source_name = f"{fmt}:{name}"[:_SOURCE_NAME_MAX]
    items = 0
    with transaction.atomic():
        while chunk := list(itertools.islice(records, chunk_size)):
            _write(chunk, project=project, source=name[:_SOURCE_MAX], source_name=source_name,
                   import_job_id=import_job_id)
            items += len(chunk)
            if progress is not None:
                progress(counter.rows)
        if counter.rows == 0:
            raise ImportError_(path=name, line=0, field="(file)", message="the file has no rows")
    return ImportResult(format=fmt, rows=counter.rows, items=items)
