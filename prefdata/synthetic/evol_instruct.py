"""Evol-Instruct (Xu et al. 2023, WizardLM, arXiv:2304.12244): make instructions harder or new, in rounds.

In-depth evolution rewrites a prompt by one of five methods; in-breadth evolution writes a new prompt of
the same domain. The prompts below follow the paper's appendix. An evolved prompt is eliminated
(``elimination_reason``) when:
1. it brings no new information: equal to its parent after normalisation (the paper asks ChatGPT; this
   is the check that needs no model);
2. the answer to it is a refusal ("sorry") and short (under 80 words), i.e. hard to answer;
3. the answer is only punctuation and stop words, or it is too short to be a task;
4. it copies words of the rewriting prompt ("given prompt", "rewritten prompt", "#Created Prompt#"...).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from prefdata.synthetic.text import normalise, words

DEPTH_METHODS: dict[str, str] = {
    "constraints": "Please add one more constraints/requirements into #The Given Prompt#.",
    "deepen": "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the "
              "inquiry can be increased.",
    "concretize": "Please replace general concepts with more specific concepts.",
    "reasoning": "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite "
                 "it to explicitly request multiple-step reasoning.",
    "complicate_input": "Please add a complex input to #The Given Prompt#, such as a table, code or data, that "
                        "the answer must use.",
}
METHODS = (*DEPTH_METHODS, "breadth")

DEPTH_TEMPLATE = (
    "I want you act as a Prompt Rewriter.\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., chatgpt and GPT4) a bit harder to handle.\n"
    "But the rewritten prompt must be reasonable and must be understood and responded by humans.\n"
    "Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. Also, "
    "please do not omit the input in #The Given Prompt#.\n"
    "You SHOULD complicate the given prompt using the following method:\n{method}\n"
    "You should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# can only "
    "add 10 to 20 words into #The Given Prompt#.\n"
    "'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to "
    "appear in #Rewritten Prompt#\n"
    "#The Given Prompt#:\n{prompt}\n#Rewritten Prompt#:\n"
)
BREADTH_TEMPLATE = (
    "I want you act as a Prompt Creator.\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
    "The #Created Prompt# must be reasonable and must be understood and responded by humans.\n"
    "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
    "#Created Prompt#\n"
    "#Given Prompt#:\n{prompt}\n#Created Prompt#:\n"
)

# Words of the rewriting prompts that must not leak into an evolved prompt (rule 4).
TEMPLATE_WORDS = ("given prompt", "rewritten prompt", "created prompt", "#the given prompt#",
                  "#rewritten prompt#", "#created prompt#", "prompt rewriter", "prompt creator")

STOP_WORDS = frozenset("a an the and or but if of to in on at by for with from as is are was were be been it "
                       "this that these those i you he she we they me my your our their its not no yes so do "
                       "does did have has had will would can could should".split())


def evolve_prompt(prompt: str, method: str) -> str:
    """The instruction that asks a model to evolve ``prompt`` by ``method`` (one of ``METHODS``)."""
    if method == "breadth":
        return BREADTH_TEMPLATE.format(prompt=prompt)
    if method not in DEPTH_METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, not {method!r}")
    return DEPTH_TEMPLATE.format(method=DEPTH_METHODS[method], prompt=prompt)


def method_choose(rng: random.Random, methods: Sequence[str] = METHODS) -> str:
    """One method, uniformly, as the paper picks one of the six per prompt and round."""
    return rng.choice(list(methods))


def clean_evolved(text: str) -> str:
    """The evolved prompt out of a model's answer: a leading "#Rewritten Prompt#:" mark removed."""
    text = text.strip()
    for mark in ("#Rewritten Prompt#:", "#Created Prompt#:", "Rewritten Prompt:", "Created Prompt:"):
        if text.lower().startswith(mark.lower()):
            text = text[len(mark) :].strip()
    return text


def elimination_reason(parent: str, evolved: str, response: str | None = None, *, min_words: int = 3,
                       refusal_max_words: int = 80) -> str | None:
    """Why an evolved prompt fails (the rules in the module's docstring), or None when it passes.
    ``response`` is the model's answer to the evolved prompt, when one was generated."""
    if normalise(evolved) == normalise(parent):
        return "no_new_information"
    if len(words(evolved)) < min_words:
        return "too_short"
    lowered = evolved.lower()
    if any(word in lowered for word in TEMPLATE_WORDS):
        return "copies_prompt"
    if response is not None:
        answer = words(response)
        if "sorry" in answer and len(answer) < refusal_max_words:
            return "refusal"
        if all(w in STOP_WORDS for w in answer):
            return "empty_response"
    return None
