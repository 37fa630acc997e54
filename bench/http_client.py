"""Is the HTTP judge client ever the bottleneck? A local OpenAI-compatible server answers after a
fixed delay (standing in for a model server); the client sends N requests at each concurrency.

    .venv/bin/python bench/http_client.py [--requests 400] [--delay-ms 50]

If the client costs nothing, throughput is concurrency / delay. The server runs in its own process,
so the CPU time measured is the client's alone; the last line holds the figures at the highest
concurrency. Where throughput falls short of ideal while the client's CPU stays low, the stand-in
server (Python's threaded http.server) is what saturates, not the client.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synth.backends.base import Sampling  # noqa: E402
from synth.backends.openai import OpenAIBackend  # noqa: E402


def serve(delay: float, port_out) -> None:
    """In its own process, so the client's CPU is measured alone."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            data = json.dumps({"choices": [{"message": {"content": "[[A]]"}}],
                               "usage": {"prompt_tokens": 100, "completion_tokens": 5}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    port_out.put(server.server_port)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("fork")
    port_out = ctx.Queue()
    server = ctx.Process(target=serve, args=(args.delay_ms / 1000, port_out), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port_out.get(timeout=30)}/v1"
    conversations = [[{"role": "user", "content": f"Judge pair {i}: which is better?"}] for i in range(args.requests)]
    line = ""
    for concurrency in (1, 4, 16, 32, 64):
        n = args.requests if concurrency > 1 else max(args.requests // 8, 10)
        client = OpenAIBackend(base_url=url, model="judge", max_concurrency=concurrency)
        cpu0, t0 = os.times(), time.perf_counter()
        client.generate(conversations[:n], Sampling(max_new_tokens=8))
        wall = time.perf_counter() - t0
        cpu1 = os.times()
        cpu_ms = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) * 1000 / n
        ideal = concurrency / (args.delay_ms / 1000)
        print(f"concurrency {concurrency:>2}: {n / wall:7.1f} requests/s (ideal {ideal:7.1f}), "
              f"{100 * n / wall / ideal:5.1f}% of ideal, client CPU {cpu_ms:.2f} ms/request")
        line = (f"concurrency={concurrency} requests_per_s={n / wall:.1f} ideal_per_s={ideal:.1f} "
                f"cpu_ms_per_request={cpu_ms:.2f}")
    server.terminate()
    print(line)


if __name__ == "__main__":
    main()
