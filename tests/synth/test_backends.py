import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from synth.backends.base import Sampling
from synth.backends.local import TransformersBackend
from synth.backends.openai import OpenAIBackend


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(str(tiny_model_dir))


def test_generate_returns_n_replies_per_conversation(backend):
    conversations = [[{"role": "user", "content": "What is the capital of France?"}],
                     [{"role": "user", "content": "Give me three tips."}],
                     [{"role": "user", "content": "Why is the sky blue and not green, in one sentence?"}]]
    replies = backend.generate(conversations, Sampling(max_new_tokens=8, n=2, seed=0, batch_size=4))
    assert [len(r) for r in replies] == [2, 2, 2]
    assert all(isinstance(text, str) for pair in replies for text in pair)


def test_a_reply_cut_at_max_new_tokens_says_so(backend):
    conversation = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]
    cut = backend.generate([conversation], Sampling(max_new_tokens=2, temperature=0.0))[0][0]
    whole = backend.generate([conversation], Sampling(max_new_tokens=400, temperature=0.0))[0][0]
    assert cut.finish_reason == "length" and whole.startswith(cut)
    # Given room, the model either ends the reply itself or fills every token it was allowed.
    tokens = len(backend.tokenizer(whole, add_special_tokens=False)["input_ids"])
    assert whole.finish_reason == "stop" or tokens >= 390


def test_greedy_generation_is_independent_of_batching(backend):
    """Left padding must not change what a row generates."""
    short = [{"role": "user", "content": "Hi"}]
    long = [{"role": "user", "content": "Compare two responses to the conversation below and decide."}]
    greedy = Sampling(max_new_tokens=6, temperature=0.0, batch_size=8)
    alone = backend.generate([short], greedy)
    together = backend.generate([long, short], greedy)
    assert together[1] == alone[0]


def test_single_token_scoring_matches_full_sequence_scoring(backend):
    """The fast path (one forward over the shared prompt) gives the same numbers as scoring whole sequences."""
    conversations = [[{"role": "user", "content": "Which response is better?"}],
                     [{"role": "user", "content": "A or B?"}]]
    fast = backend.score(conversations, [["A", "B"], ["A", "B"]])
    slow = backend.score(conversations, [["A", "B two"], ["A", "B two"]])  # forces the general path
    assert fast[0][0] == pytest.approx(slow[0][0], abs=1e-4)
    assert fast[1][0] == pytest.approx(slow[1][0], abs=1e-4)
    assert all(v < 0 for row in fast for v in row)


class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append((self.path, self.headers.get("Authorization"), body))
        if body.get("logprobs"):
            data = {"choices": [{"logprobs": {"content": [{"top_logprobs": [
                {"token": "B", "logprob": -0.1}, {"token": "A", "logprob": -2.5}]}]}}]}
        else:
            data = {"choices": [{"message": {"content": f"reply {i}"}} for i in range(body["n"])]}
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_openai_compatible_backend_against_a_local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = OpenAIBackend(base_url=f"http://127.0.0.1:{server.server_port}/v1", model="m", api_key="k")
        replies = client.generate([[{"role": "user", "content": "hi"}]], Sampling(n=2, max_new_tokens=5))
        assert replies == [["reply 0", "reply 1"]]
        path, auth, body = _Handler.seen[0]
        assert (path, auth, body["model"], body["max_tokens"]) == ("/v1/chat/completions", "Bearer k", "m", 5)
        assert client.score([[{"role": "user", "content": "A or B?"}]], [["A", "B"]]) == [[-2.5, -0.1]]
    finally:
        server.shutdown()


def test_tasks_for_deleted_rows_do_nothing(db, caplog):
    """A message can outlive its row (deleted job, re-created database): the task logs and returns."""
    from judges.tasks import judge_run_execute_task
    from synth.tasks import synthesis_job_run_task
    from training.tasks import training_job_run_task

    for task in (synthesis_job_run_task, judge_run_execute_task, training_job_run_task):
        task.apply(args=[987654]).get()
    assert caplog.text.count("no longer exists") == 3


def test_bfloat16_scoring_stays_close_to_float32(tiny_model_dir):
    """Endpoints may run in bfloat16 (twice as fast on CPUs with AVX512-BF16): same answers, near the same numbers."""
    conversations = [[{"role": "user", "content": "Which response is better? A or B."}],
                     [{"role": "user", "content": "Compare two responses to the conversation below."}]]
    full = TransformersBackend(str(tiny_model_dir)).score(conversations, [["A", "B"]] * 2)
    half = TransformersBackend(str(tiny_model_dir), dtype="bfloat16").score(conversations, [["A", "B"]] * 2)
    for row_full, row_half in zip(full, half, strict=True):
        assert row_half == pytest.approx(row_full, abs=0.1)
