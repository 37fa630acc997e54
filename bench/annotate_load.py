"""Load test of the annotation API on PostgreSQL behind gunicorn, all over HTTP.

    .venv/bin/python bench/annotate_load.py [--items 100000] [--rounds 200] [--clients 16] [--seconds 30]

1. creates a fresh database (default ``prefbench`` on the local PostgreSQL) and migrates it;
2. imports a generated JSONL file of ``--items`` pairs through the real importer (import_rows_per_s);
3. starts gunicorn on 127.0.0.1 and one annotator labels ``--rounds`` items: GET next, POST label,
   each timed (next_p95_ms, submit_p95_ms);
4. ``--clients`` annotators, each a process with a keep-alive connection, label for ``--seconds``
   (labels_per_s), counting non-2xx answers (errors) and items served to two annotators or
   labeled more than k times (duplicates).
The last line holds every figure. Only loopback addresses are used; every loop is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def env_for(database_url: str) -> dict:
    return {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789", "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0", "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "600", "CELERY_TASK_ALWAYS_EAGER": "1"}


def fresh_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def write_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "the a model answer question helpful correct clear short long because therefore".split()
    with path.open("w") as out:
        for i in range(n):
            def text(k: int) -> str:
                return " ".join(rng.choice(words) for _ in range(k))
            out.write(json.dumps({"prompt": f"Question {i}: {text(rng.randint(5, 30))}?",
                                  "response_a": text(rng.randint(20, 200)), "response_b": text(rng.randint(20, 200)),
                                  "model_a": "model-x", "model_b": "model-y"}) + "\n")


def setup_project(database_url: str, path: Path, clients: int) -> dict:
    """Runs in a child process with Django set up on the bench database."""
    os.environ.update(env_for(database_url))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotate.importers import items_import
    from annotate.models import Membership
    from annotate.services import project_create, project_member_add, slots_ensure

    project = project_create(name="bench", overlap=1)
    started = time.perf_counter()
    result = items_import(project=project, path=path)
    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    slots = slots_ensure(project=project)
    slot_seconds = time.perf_counter() - started
    tokens = []
    for i in range(clients + 1):
        user = get_user_model().objects.create_user(f"bench{i}", password="x")
        project_member_add(project=project, user=user, role=Membership.Role.ANNOTATOR)
        tokens.append(Token.objects.create(user=user).key)
    return {"project": project.pk, "rows": result.rows, "import_seconds": import_seconds, "slots": slots,
            "slot_seconds": slot_seconds, "tokens": tokens}


def _setup_entry(database_url, path, clients, queue):
    queue.put(setup_project(database_url, path, clients))


class Client:
    def __init__(self, port: int, token: str, project: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.project = project

    def next(self) -> tuple[int, dict | None]:
        self.conn.request("GET", f"/api/projects/{self.project}/next/", headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return response.status, (json.loads(body) if response.status == 200 else None)

    def label(self, item_id: int, verdict: str) -> int:
        body = json.dumps({"verdict": verdict, "strength": 2, "time_spent_ms": 1000})
        self.conn.request("POST", f"/api/projects/{self.project}/items/{item_id}/label/", body=body,
                          headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        return response.status


def worker_loop(port: int, token: str, project: int, seconds: float, out) -> None:
    client = Client(port, token, project)
    served, errors, labels = [], 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            code, item = client.next()
            if code == 204:
                break
            if code != 200:
                errors += 1
                continue
            served.append(item["id"])
            if client.label(item["id"], random.choice("AB")) == 201:
                labels += 1
            else:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            client = Client(port, token, project)
    out.put({"served": served, "errors": errors, "labels": labels})


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (sync was fastest here)")
    parser.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="prefbench")
    args = parser.parse_args()

    database_url = fresh_database(args.admin_url, args.database)
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env_for(database_url), check=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.jsonl"
        write_rows(path, args.items)
        queue: mp.Queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(target=_setup_entry, args=(database_url, path, args.clients, queue))
        proc.start()
        setup = queue.get(timeout=1800)
        proc.join()
    import_rate = setup["rows"] / setup["import_seconds"]
    print(f"imported {setup['rows']} rows in {setup['import_seconds']:.2f} s ({import_rate:,.0f} rows/s); "
          f"{setup['slots']} slots in {setup['slot_seconds']:.2f} s", flush=True)

    port = free_port()
    server = subprocess.Popen(
        [PY, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(args.workers),
         "-k", args.worker_class, "--threads", str(args.threads), "--log-level", "warning"],
        cwd=ROOT, env=env_for(database_url), start_new_session=True)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        tokens, project = setup["tokens"], setup["project"]
        # Warm every worker process (imports, connections) before measuring.
        warm = Client(port, tokens[-1], project)
        for _ in range(4 * args.workers):
            warm.conn.request("GET", "/api/projects/", headers=warm.headers)
            warm.conn.getresponse().read()
        # One annotator: latencies.
        client = Client(port, tokens[0], project)
        next_ms, submit_ms, single_errors = [], [], 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            code, item = client.next()
            next_ms.append((time.perf_counter() - t0) * 1000)
            if code != 200:
                single_errors += 1
                continue
            t0 = time.perf_counter()
            if client.label(item["id"], "A") != 201:
                single_errors += 1
            submit_ms.append((time.perf_counter() - t0) * 1000)
        print(f"single annotator: next p50 {statistics.median(next_ms):.1f} ms p95 {p95(next_ms):.1f} ms; "
              f"submit p50 {statistics.median(submit_ms):.1f} ms p95 {p95(submit_ms):.1f} ms", flush=True)
        # Many annotators: throughput.
        ctx = mp.get_context("fork")
        out = ctx.Queue()
        procs = [ctx.Process(target=worker_loop, args=(port, tokens[1 + i], project, args.seconds, out))
                 for i in range(args.clients)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        results = [out.get(timeout=args.seconds + 120) for _ in procs]
        elapsed = time.perf_counter() - started
        for p in procs:
            p.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    labels = sum(r["labels"] for r in results)
    errors = single_errors + sum(r["errors"] for r in results)
    served = [item for r in results for item in r["served"]]
    duplicates = len(served) - len(set(served)) + count_overlabeled(database_url)
    print(f"{args.clients} annotators for {elapsed:.1f} s: {labels} labels", flush=True)
    print(f"import_rows_per_s={import_rate:.0f} next_p95_ms={p95(next_ms):.1f} submit_p95_ms={p95(submit_ms):.1f} "
          f"labels_per_s={labels / elapsed:.1f} errors={errors} duplicates={duplicates}")


def count_overlabeled(database_url: str) -> int:
    """Items with more labels than k (k = 1 here)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM (SELECT item_id FROM annotate_pairlabel GROUP BY item_id "
                            "HAVING count(*) > 1) t").fetchone()[0]


if __name__ == "__main__":
    main()
