"""The parameters of each kind of synthesis job: their types, bounds, defaults and help texts, in one table
that validates a job's params (service and API, errors naming the field) and builds the page's forms."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from annotate.api_errors import ID_MAX
from prefdata.synthetic.evol_instruct import METHODS
from prefdata.synthetic.pairs import SCORED, STRATEGIES


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int", "float", "str", "bool", "choice", "choices", "texts", "ids"
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False


# The default format of reasoning traces: the thinking in tags, then the answer (DeepSeek-R1's template).
TRACE_SYSTEM_PROMPT = ("Think step by step inside <think> and </think>, then give the final answer after the closing "
                       "tag. For a math problem end with: The answer is <answer>. For a programming task, give the "
                       "complete Python code in one ```python block.")

SAMPLING = (
    Param("max_new_tokens", "int", 64, "Most tokens generated per completion.", 1, 4096),
    Param("temperature", "float", 0.8, "Sampling temperature (0: greedy).", 0, 2),
    Param("top_p", "float", 0.95, "Nucleus sampling: the smallest set of tokens with this much probability.", 0.01, 1),
    Param("seed", "int", 0, "Random seed (empty: none).", 0, 2**31 - 1, nullable=True),
    Param("batch_size", "int", 8, "Prompts per batch (and per chunk of work committed at once).", 1, 256),
    Param("system_prompt", "str", "", "A system message put before each prompt (empty: none)."),
)
DEDUP = Param("dedup_threshold", "float", 0.8, "Jaccard similarity of word 3-grams above which two texts are "
              "near-duplicates (MinHash LSH); 1 removes only exact duplicates.", 0.05, 1)
MAX_PROMPTS = Param("max_prompts", "int", 0, "Use at most this many of the project's prompts (0: all).", 0, 10**7)
MAX_COST = Param("max_cost", "float", None, "Stop before spending more than this on the job (currency units; "
                 "empty: only the endpoint's cap).", 0, None, nullable=True)
ANSWER = Param("answer", "bool", True, "Also answer each new prompt with the endpoint (stored as a completion).")

PARAMS: dict[str, tuple[Param, ...]] = {
    "pairs": (*SAMPLING, MAX_COST),
    "sampling": (*SAMPLING, MAX_PROMPTS, MAX_COST, DEDUP,
                 Param("n", "int", 4, "Completions per prompt from each endpoint.", 1, 64),
                 Param("extra_endpoints", "ids", [], "More endpoints that answer each prompt too (ids): pairs "
                       "across models."),
                 Param("strategy", "choice", "all", "Which completions become pairs: all pairs, random pairs, "
                       "across models, best-vs-worst, best-vs-random or by a score margin (these three need a "
                       "scorer).", choices=STRATEGIES),
                 Param("max_pairs", "int", 1, "Random and across-models strategies: most pairs per prompt "
                       "(0: no cap).", 0, 1000),
                 Param("margin", "float", 0.0, "Margin strategy: least score difference of a pair.", 0, None)),
    "self_instruct": (*SAMPLING, MAX_COST, DEDUP,
                      Param("num_instructions", "int", 20, "Stop once this many new instructions are kept.", 1,
                            100000),
                      Param("max_rounds", "int", 20, "Most rounds of generation (a batch of requests each).", 1,
                            10000),
                      Param("seed_tasks", "texts", [], "Seed tasks, one per line (empty: the project's prompts)."),
                      Param("examples", "int", 8, "Tasks of the pool shown in each request.", 1, 32),
                      Param("rouge_threshold", "float", 0.7, "Keep an instruction only if its ROUGE-L against every "
                            "task of the pool is below this.", 0.05, 1),
                      Param("min_words", "int", 3, "Shortest instruction kept (words).", 1, 1000),
                      Param("max_words", "int", 150, "Longest instruction kept (words).", 1, 10000)),
    "evol_instruct": (*SAMPLING, MAX_PROMPTS, MAX_COST, DEDUP, ANSWER,
                      Param("rounds", "int", 1, "Rounds of evolution per prompt.", 1, 8),
                      Param("methods", "choices", list(METHODS), "Evolutions drawn from: in depth (add "
                            "constraints, deepen, concretize, more reasoning steps, complicate the input) and in "
                            "breadth.", choices=METHODS)),
    "magpie": (*SAMPLING, MAX_COST, DEDUP, ANSWER,
               Param("num_instructions", "int", 16, "Stop once this many new instructions are kept.", 1, 100000),
               Param("max_rounds", "int", 20, "Most rounds of generation (a batch each).", 1, 10000),
               Param("min_words", "int", 3, "Shortest instruction kept (words).", 1, 1000),
               Param("max_words", "int", 150, "Longest instruction kept (words).", 1, 10000)),
    "constitutional": (*SAMPLING, MAX_PROMPTS, MAX_COST,
                       Param("rounds", "int", 1, "Critique and revision rounds per response (k), each under a "
                             "principle drawn from the constitution.", 1, 8)),
    "best_of_n": (*SAMPLING, MAX_PROMPTS, MAX_COST, DEDUP,
                  Param("n", "int", 4, "Samples per prompt, scored by the reward model.", 2, 64)),
    "traces": (*SAMPLING[:-1], MAX_COST,
               Param("system_prompt", "str", TRACE_SYSTEM_PROMPT, "The trace format asked for: a system message "
                     "put before each problem (empty: none)."),
               Param("n", "int", 4, "Traces sampled per problem (k); pass@k is reported for k = 1 and k = n.", 1,
                     64),
               Param("tags", "texts", [], "Only problems with every one of these tags (empty: all)."),
               Param("split", "choice", "", "Only problems of this split (empty: both).",
                     choices=("", "train", "test")),
               Param("max_problems", "int", 0, "Use at most this many problems (0: all).", 0, 10**7),
               Param("max_pairs", "int", 1, "Pairs per problem, each a correct trace over a wrong one (0: none).",
                     0, 64)),
    "math_shepherd": (*SAMPLING, MAX_COST,
                      Param("n", "int", 4, "Rollouts to the end from each step (k).", 1, 64),
                      Param("estimate", "choice", "hard", "The step rating stored: hard, +1 when any rollout "
                            "reaches the reference answer; soft, +1 when at least the threshold's share does "
                            "(the shares themselves are kept with the job's rows).", choices=("hard", "soft")),
                      Param("soft_threshold", "float", 0.5, "Soft estimate: least share of correct rollouts of a "
                            "+1 step.", 0.0, 1.0),
                      Param("max_items", "int", 0, "Label at most this many solutions (0: all).", 0, 10**7)),
}

# Kinds that need a scorer endpoint always; sampling needs one only for a scored strategy.
NEEDS_SCORER = ("best_of_n",)
NEEDS_CONSTITUTION = ("constitutional",)
# Kinds that work on the project's problem bank, and on its step items (a steps project).
ON_PROBLEMS = ("traces",)
ON_STEP_ITEMS = ("math_shepherd",)
# Kinds that write the user-turn prefix themselves: only a local model with a chat template can.
LOCAL_ONLY = ("magpie",)


def _one(param: Param, value: object) -> object:
    """The value checked and converted; ValidationError naming the field."""
    field = param.name
    if value is None or value == "":
        if param.nullable:
            return None
        if param.type == "choice" and "" in param.choices:
            return param.default if value is None else ""
        if param.type in ("str", "texts", "ids", "choices"):
            return param.default if value is None else ("" if param.type == "str" else [])
        raise ValidationError({field: f"{field}: a value is required"})
    try:
        if param.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif param.type == "float":
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):
                raise ValueError
        elif param.type == "bool":
            if not isinstance(value, bool):
                raise ValueError
        elif param.type in ("str", "choice"):
            if not isinstance(value, str) or "\x00" in value:
                raise ValueError
        elif param.type == "texts":
            if isinstance(value, str):
                value = [line.strip() for line in value.splitlines() if line.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and "\x00" not in v
                                                      for v in value):
                raise ValueError
        elif param.type == "ids":
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                      and 1 <= v <= ID_MAX for v in value):
                raise ValueError
        elif param.type == "choices":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ValueError
    except (TypeError, ValueError):
        raise ValidationError({field: f"{field}: expected {_expected(param)}, not {value!r}"}) from None
    if param.type in ("int", "float"):
        if (param.min is not None and value < param.min) or (param.max is not None and value > param.max):
            raise ValidationError({field: f"{field}: expected {_expected(param)}, not {value!r}"})
    if param.type == "choice" and value not in param.choices:
        raise ValidationError({field: f"{field}: expected one of {', '.join(param.choices)}, not {value!r}"})
    if param.type == "choices":
        wrong = [v for v in value if v not in param.choices]
        if wrong:
            raise ValidationError({field: f"{field}: unknown {', '.join(wrong)}; choose from "
                                          f"{', '.join(param.choices)}"})
    return value


def _expected(param: Param) -> str:
    kind = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a text",
            "choice": "one of " + ", ".join(param.choices), "texts": "a list of non-empty texts",
            "ids": "a list of ids", "choices": "a non-empty list of " + ", ".join(param.choices)}[param.type]
    if param.type in ("int", "float") and (param.min is not None or param.max is not None):
        low = "" if param.min is None else f"{param.min:g}"
        high = "" if param.max is None else f"{param.max:g}"
        kind += f" in [{low}, {high}]" if high else f" of at least {low}"
    return kind


def params_clean(kind: str, params: dict | None) -> dict:
    """The params of a job of ``kind``: every field of the kind, defaults filled in, each checked.
    ValidationError naming the field for a wrong value, an unknown field, or a strategy that needs a scorer
    (which ``synthesis_job_create`` checks against the scorer given)."""
    if kind not in PARAMS:
        raise ValidationError({"kind": f"kind: expected one of {', '.join(PARAMS)}, not {kind!r}"})
    params = dict(params or {})
    known = {p.name for p in PARAMS[kind]}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValidationError({unknown[0]: f"{unknown[0]}: not a parameter of a {kind} job; it takes "
                                           f"{', '.join(sorted(known))}"})
    return {p.name: _one(p, params[p.name]) if p.name in params else copy.deepcopy(p.default) for p in PARAMS[kind]}


def strategy_needs_scorer(params: dict) -> bool:
    return params.get("strategy") in SCORED
