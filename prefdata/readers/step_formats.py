"""Step formats: one record of a file to a solution split into steps (``StepRecord``), for our own JSONL,
PRM800K, BIG-Bench Mistake and Math-Shepherd.

Where the file carries step labels they come as ``StepRatings``: +1 (correct), 0 (neutral), -1 (wrong) or
None (not labeled). A row parser raises KeyError, ``FieldError`` or ValueError, which the reader turns
into a ``ReadError`` naming the file, the line and the field; it returns None for a row to skip.
"""

from __future__ import annotations

import re
from typing import Any

from prefdata.readers.pair_formats import model_name_clean, prompt_conversation
from prefdata.records import (
    BAD_PROBLEM,
    CORRECT,
    FINISH_REASONS,
    FOUND_ERROR,
    GAVE_UP,
    INCORRECT,
    OUTCOMES,
    SOLUTION,
    STEP_RATINGS,
    FieldError,
    StepRatings,
    StepRecord,
    text_clean,
)

PRM800K_FINISH_REASONS = {
    "solution": SOLUTION,
    "found_error": FOUND_ERROR,
    "give_up": GAVE_UP,  # PRM800K's spelling
    "gave_up": GAVE_UP,
    "bad_problem": BAD_PROBLEM,
}
MATH_SHEPHERD_TAG = "ки"
_MATH_SHEPHERD_FIRST_STEP = re.compile(r"step\s*1\s*:", re.IGNORECASE)


# -- one record to a step item ------------------------------------------------------------------------------


def _text(value: object, field_name: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise FieldError(field_name, f"{field_name}: expected a string")
    value = text_clean(value)
    if required and not value.strip():
        raise FieldError(field_name, f"{field_name}: empty")
    return value


def _steps(value: object, field_name: str = "steps") -> list[str]:
    if not isinstance(value, list) or not value:
        raise FieldError(field_name, f"{field_name}: expected a non-empty list of strings")
    return [_text(step, f"{field_name}[{i}]").strip() for i, step in enumerate(value)]


def _rating(value: object, field_name: str) -> int | None:
    # bool is an int in Python: true would pass as 1.
    if isinstance(value, bool) or value not in STEP_RATINGS:
        raise FieldError(field_name, f"{field_name}: {value!r} is not one of 1, 0, -1, null")
    return None if value is None else int(value)  # type: ignore[call-overload]


def _choice(value: object, field_name: str, choices: tuple[str, ...]) -> str:
    if value is None:
        return ""
    if value not in choices:
        raise FieldError(field_name, f"{field_name}: {value!r} is not one of {list(choices)}")
    return str(value)


def _metadata(value: object, field_name: str = "metadata") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(field_name, f"{field_name}: expected an object")
    return value


def _problem(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text.strip()}]


def steps_row(row: dict) -> StepRecord:
    """Our own format."""
    if "prompt" not in row:
        raise KeyError("prompt")
    prompt = prompt_conversation(row["prompt"])
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        raise FieldError("prompt", "prompt: no user message with the problem")
    steps = _steps(row.get("steps"))
    item = StepRecord(
        prompt, steps, solution_text="\n\n".join(steps),
        reference_answer=_text(row.get("reference_answer"), "reference_answer", required=False),
        ground_truth_solution=_text(row.get("ground_truth_solution"), "ground_truth_solution", required=False),
        model_name=model_name_clean(row.get("model"), "model"), metadata=_metadata(row.get("metadata")))
    ratings = row.get("ratings")
    if ratings is not None:
        if not isinstance(ratings, list) or len(ratings) != len(steps):
            raise FieldError("ratings", f"ratings: expected a list of {len(steps)} ratings, one per step")
        ratings = [_rating(r, f"ratings[{i}]") for i, r in enumerate(ratings)]
        finish_reason = _choice(row.get("finish_reason"), "finish_reason", FINISH_REASONS) or (
            FOUND_ERROR if -1 in ratings else SOLUTION)
        item.label = StepRatings(ratings, finish_reason, _choice(row.get("outcome"), "outcome", OUTCOMES))
    return item


def prm800k_row(row: dict) -> StepRecord | None:
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
        raise FieldError("question", "question: expected an object")
    problem = _text(question.get("problem"), "question.problem")
    label = row.get("label")
    if not isinstance(label, dict):
        raise FieldError("label", "label: expected an object")
    label_steps = label.get("steps")
    if not isinstance(label_steps, list):
        raise FieldError("label.steps", "label.steps: expected a list")
    steps: list[str] = []
    ratings: list[int | None] = []
    flags: list[int] = []
    alternatives: list[dict[str, Any]] = []
    human_steps: list[int] = []
    for i, step in enumerate(label_steps):
        where = f"label.steps[{i}]"
        if not isinstance(step, dict):
            raise FieldError(where, f"{where}: expected an object")
        completions = step.get("completions") or []
        if not isinstance(completions, list):
            raise FieldError(f"{where}.completions", f"{where}.completions: expected a list")
        candidates = []
        for j, completion in enumerate(completions):
            at = f"{where}.completions[{j}]"
            if not isinstance(completion, dict):
                raise FieldError(at, f"{at}: expected an object")
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
                raise FieldError(f"{where}.human_completion", f"{where}.human_completion: expected a string or object")
            rating = 1 if rating is None else rating
            human_steps.append(i)
        else:
            if chosen is None:
                used = 0
            elif isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(candidates):
                raise FieldError(f"{where}.chosen_completion",
                                 f"{where}.chosen_completion: {chosen!r} is not the index of one of its "
                                 f"{len(candidates)} completions")
            else:
                used = chosen
            if not candidates:
                raise FieldError(f"{where}.completions", f"{where}.completions: no completion and no human_completion")
            text, rating, flagged = candidates[used]["text"], candidates[used]["rating"], candidates[used]["flagged"]
            if not text.strip():
                raise FieldError(f"{where}.completions[{used}].text", f"{where}.completions[{used}].text: empty")
        steps.append(text.strip())
        ratings.append(rating)
        if flagged:
            flags.append(i)
        alternatives.extend({"step": i, **c} for j, c in enumerate(candidates) if j != used)

    finish = label.get("finish_reason")
    if finish is None:
        finish_reason = FOUND_ERROR if -1 in ratings else SOLUTION
    elif finish in PRM800K_FINISH_REASONS:
        finish_reason = PRM800K_FINISH_REASONS[finish]
    else:
        raise FieldError("label.finish_reason", f"label.finish_reason: {finish!r} is not one of "
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
    record = StepRecord(
        _problem(problem), steps, solution_text="\n\n".join(steps),
        reference_answer=_text(question.get("ground_truth_answer"), "question.ground_truth_answer", required=False),
        ground_truth_solution=_text(question.get("ground_truth_solution"), "question.ground_truth_solution",
                                    required=False),
        prompt_metadata={k: question[k] for k in ("subject", "level", "unique_id") if question.get(k) is not None},
        metadata=metadata, label=StepRatings(ratings, finish_reason, "", flags))
    return record if record.steps else None


def bbm_row(row: dict) -> StepRecord:
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
        raise FieldError("mistake_index", f"mistake_index: {mistake!r} is not null or a step index "
                                          f"(0 to {len(steps) - 1})")
    else:
        ratings = [1] * mistake + [-1] + [None] * (len(steps) - mistake - 1)
    answer = _text(row.get("answer"), "answer", required=False)
    target = _text(row.get("target"), "target", required=False)
    outcome = ""
    if answer.strip() and target.strip():
        outcome = CORRECT if answer.strip() == target.strip() else INCORRECT
    finish_reason = SOLUTION if mistake is None else FOUND_ERROR
    metadata = {"mistake_index": mistake, **({"answer": answer} if row.get("answer") is not None else {})}
    return StepRecord(_problem(problem), steps, solution_text="\n\n".join(steps), reference_answer=target,
                      metadata=metadata, label=StepRatings(ratings, finish_reason, outcome))


def math_shepherd_row(row: dict) -> StepRecord:
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
        raise FieldError("input", f'input: no step marker "{MATH_SHEPHERD_TAG}"')
    if len(label) != len(text) - len(positions) * (len(MATH_SHEPHERD_TAG) - 1):
        raise FieldError("label", "label: not the input with each step marker replaced by + or -")
    ratings: list[int | None] = []
    for k, position in enumerate(positions):
        sign = label[position - k]
        if sign not in "+-":
            raise FieldError("label", f"label: step {k + 1}: expected + or - where the input has its marker, "
                                      f"found {sign!r}")
        ratings.append(1 if sign == "+" else -1)
    pieces = text.split(MATH_SHEPHERD_TAG)
    if pieces[-1].strip():
        raise FieldError("input", f'input: text after the last step marker "{MATH_SHEPHERD_TAG}"')
    first = _MATH_SHEPHERD_FIRST_STEP.search(pieces[0])
    if first is None:
        raise FieldError("input", 'input: no "Step 1:" before the first step marker, so the problem cannot be told '
                                  "from the solution")
    problem = pieces[0][:first.start()].strip()
    if not problem:
        raise FieldError("input", "input: no problem before \"Step 1:\"")
    steps = [pieces[0][first.start():].strip(), *(p.strip() for p in pieces[1:-1])]
    for i, step in enumerate(steps):
        if not step:
            raise FieldError("input", f"input: step {i + 1} is empty")
    task = row.get("task")
    return StepRecord(
        _problem(problem), steps, solution_text="\n".join(steps),
        prompt_metadata={"task": task} if task is not None else {},
        label=StepRatings(
            ratings,
            FOUND_ERROR if -1 in ratings else SOLUTION,
            CORRECT if ratings[-1] == 1 else INCORRECT))
