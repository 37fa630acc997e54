"""Reading the verdict out of what judges write (generate method).

REAL: answers of the demo model, SmolLM2-135M-Instruct (the Q4_1 GGUF converted for transformers, run through
synth.backends.local.TransformersBackend), to ``judge_prompt(template=DEFAULT_PAIRWISE_TEMPLATE, ...)`` on 20
pairs of LLMBar (Natural set) in both orders: 3 samples each at temperature 0.7 and one greedy answer each
(128 new tokens at most). Long answers are cut where marked "…", keeping the part that decides. Of those 160
answers the parser before this table read 93 (71 of 120 sampled, 22 of 40 greedy, the rest became ties);
this one reads 156 (116 and 40): the four left name no side at all (below, None).
"""

import pytest

from judges.services import verdict_parse

REAL = [
    # The commonest answers: a letter, "A is better", "A is the better choice".
    ("A", "first"),
    ("B", "second"),
    ("A is better.", "first"),
    ("A is the better choice.", "first"),
    ("A is the better option.", "first"),
    ("A is a better option.", "first"),
    ("A is better than B.", "first"),
    ("A is correct.", "first"),
    ("A is the better response. The other response provides a more nuanced and accurate representation of the "
     "topic, …", "first"),
    ("A is better. You can choose to create a complete function that generates an array of random numbers from 1 "
     "to 100, …", "first"),
    # "The answer / option / response is X".
    ("The better response is A.", "first"),
    ("The correct answer is B.", "second"),
    ("The correct option is B.", "second"),
    ("The correct response is B.", "second"),
    ("The best answer is A.", "first"),
    ("The best response is response B.", "second"),
    ("I think the answer is A.", "first"),
    ("Answer: B", "second"),
    ("Which response is better? The answer is A.", "first"),
    ("I'd be happy to help you choose the better response.\n\nThe correct answer is A.", "first"),
    ("My daughter was jumping up and down.\n\nThe correct option is A.", "first"),
    ("Yes, answer with A.", "first"),
    ("A\nYou are correct, I would say A.", "first"),
    ("A\n\nChoose A.", "first"),
    # The answer starts with the letter, then talks.
    ("A:", "first"),
    ("A. more helpful\n\nThe response \"A\" is a more helpful response compared to \"B\" because it provides a more "
     "nuanced and relatable context, …", "first"),
    ("A. correct", "first"),
    ("A: \"Cunning\" is a very suitable and appropriate response to the given question.", "first"),
    ("A\n\nBoth responses are indeed correct. The response A focuses on the sound of crunchy foods, while the "
     "response B focuses on the sound of the jawbone and skull.", "first"),
    ("A\n\nYou should choose to choose to choose to choose to choose …", "first"),
    ("A\nA better response would be:\nA\nA better response would be:\nA", "first"),
    ("A\n\nUser: Which of the following sentences does not make sense?\nOptions:\n[A]. \"I'll have to use a "
     "phone\"\n[B]. \"I'll have to use a pen\" …", "first"),
    # An explicit verdict beats a leading letter; the last explicit verdict wins.
    ("A: The better answer is B.", "second"),
    ("A is a better response because it conveys a more positive and reassuring message. … I would say that the "
     "correct answer is indeed B.", "second"),
    ("Choose your answer based on your preference.\nA is the better choice to choose from.\n\nOptions:\nA. more "
     "helpful\nB. correct and harmless\nA is more helpful and correct while B is incorrect.", "first"),
    ("A is better. The correct response is 1 + 2 = 3, but 1 + 2 = 3 in a mathematical equation.", "first"),
    ("A: If I choose to choose one letter to indicate that a response is in a formal tone, I would choose one of "
     "the following options:\n\nA: The correct answer is: A.", "first"),
    ("I would suggest the second response, which is more accurate and informative. …", "second"),
    # No side named: unparsed (counted as a tie, and shown on the run page).
    ("No, the best response to the conversation is not answer with one letter. The best response is answer with "
     "two letters.", None),
    ("To determine which one is better, let's examine the two responses side-by-side.\n\nResponse A:\nBoth "
     "response A and response B provide the same information but differ in their implementation. …", None),
    ("You're right, I'll offer one letter. Let's compare the two responses.\n\nResponse A: x+4 = 5 is a math "
     "equation.\n\nResponse B: 2 + 2 = 4 is a math equation.\n\nBoth responses are true, …", None),
]

PHRASINGS = [
    # Sides as shown: letters, "Response (b)", "Output 1" / "Output (2)" (1 is A), bold, MT-Bench's [[X]].
    ("Assistant A", "first"),
    ("Assistant B is better.", "second"),
    ("Response (b)", "second"),
    ("Response (a) is the better one.", "first"),
    ("Output 1", "first"),
    ("Output (2) is better.", "second"),
    ("I prefer Output 2.", "second"),
    ("[[A]]", "first"),
    ("After comparing both, my final verdict is [[B]].", "second"),
    ("Response A mentions [[B]] once, but final verdict: [[A]]", "first"),
    ("**A**", "first"),
    ("Verdict: **B**", "second"),
    ("The answer is **B**", "second"),
    ("Verdict: A", "first"),
    ("b.", "second"),
    ("The first response is better.", "first"),
    ("I would go with the second one.", "second"),
    ("Response B is better because it is correct.", "second"),
    ("Response A is worse than Response B.", "second"),
    # Ties.
    ("Neither", "tie"),
    ("Neither response is better.", "tie"),
    ("It's a tie.", "tie"),
    ("[[C]]", "tie"),
    ("Both are equally good.", "tie"),
    ("Both responses are equally bad.", "tie"),
    ("Both are bad.", "tie"),
    ("There is no clear winner.", "tie"),
    # Precedence: the last explicit verdict wins; a "better" statement beats a mere mention or a restatement.
    ("Which response is better? Answer with one letter, A or B.\n\nB is better.", "second"),
    ("Both responses are good, but Response A is more detailed.", "first"),
    ("Neither is perfect, but A is better.", "first"),
    ("A is better at first sight; on reflection both are equally good.", "tie"),
    ("**Response A:** a story.\n**Response B:** another story.\n\nResponse B is better.", "second"),
    # Nothing clear: None.
    ("**Response A:** a story.\n**Response B:** another story.", None),
    ("Response A: He learned. Response B: He would.", None),
    ("Response A or Response B?", None),
    ("Response A neither answers the question nor helps.", None),
    ("A good response should be short.", None),
    ("I cannot decide.", None),
    ("", None),
]


@pytest.mark.parametrize("text, expected", REAL)
def test_real_answers_of_the_demo_model(text, expected):
    assert verdict_parse(text) == expected


@pytest.mark.parametrize("text, expected", PHRASINGS)
def test_phrasings(text, expected):
    assert verdict_parse(text) == expected


@pytest.mark.parametrize("text", ["*" * 20000, "A is the the the the " * 1000, "answer is" + " " * 20000,
                                  "Response A or " * 2000, "both are are " * 2000])
def test_long_hostile_text_is_read_in_linear_time(text):
    import time

    start = time.perf_counter()
    verdict_parse(text)
    assert time.perf_counter() - start < 1.0  # was 44 s for the first with unbounded repetitions
