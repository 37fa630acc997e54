"""Import speed of imports (prefdata.readers, annotate.importers) on the configured database.

    python bench/import_speed.py --rows 200000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/importbench python bench/import_speed.py --rows 200000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/importbench python bench/import_speed.py --server-only

Without DATABASE_URL a throw-away test database is created (and dropped); with it, that database is
migrated and used, and the rows imported are deleted afterwards unless --keep. Writes a JSONL file of
synthetic rows in our "pairs" format (varied lengths; string prompts and conversations), imports it
and prints the figures, ``import_rows_per_s=...`` last.

The CPU time of the import is split between this process (parsing, encoding) and, when the server
runs on this machine, its backend process (storing, index and foreign-key maintenance), read from
/proc: on PostgreSQL the two overlap, so the slower one bounds the rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

WORDS = ("the model answer is clear because each step follows from the previous one and we check it again "
         "with a small example before writing out a final result for the user ; café naïve 中文 😀 "
         "tab\there \"quoted\" back\\slash").split(" ")


def text(rng: random.Random, median_words: float, cap: int) -> str:
    # Long-tailed lengths (log-normal), as in real preference data: many short texts, a few long ones.
    words = min(cap, max(1, int(rng.lognormvariate(math.log(median_words), 0.9))))
    return " ".join(rng.choices(WORDS, k=words))


def rows_write(path: Path, n: int, *, words: int = 40, seed: int = 0) -> int:
    """``n`` rows whose responses have a median of ``words`` words (prompts: half that)."""
    rng = random.Random(seed)
    w = max(2, words)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            if i % 4:
                prompt: object = text(rng, w / 2, 10 * w)
            else:
                prompt = [{"role": "system", "content": "Be helpful."},
                          {"role": "user", "content": text(rng, w / 2, 10 * w)},
                          {"role": "assistant", "content": text(rng, w, 20 * w)},
                          {"role": "user", "content": text(rng, w / 4, 5 * w) + "\nand more?"}]
            row = {"prompt": prompt, "response_a": text(rng, w, 40 * w), "response_b": text(rng, w, 40 * w),
                   "model_a": f"model-{i % 7}", "model_b": f"model-{(i + 3) % 7}"}
            if i % 5 == 0:
                row["metadata"] = {"source_row": i, "tags": ["synthetic", "bench"]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path.stat().st_size


def backend_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a local process (the database backend), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--words", type=int, default=40,
                        help="median words of a response (log-normal lengths; prompts have half)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the imported rows (DATABASE_URL only)")
    parser.add_argument("--server-only", action="store_true",
                        help="PostgreSQL: encode every chunk first, then time only the server storing them "
                             "(COPY, indexes, foreign-key checks), and roll back: the ceiling of one connection")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from annotate.importers import DEFAULT_CHUNK_SIZE, items_import
    from annotate.models import Completion, PairItem, Project, Prompt

    own_database = not os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp:
        if own_database:
            # A test database of its own (never the shared var/test.sqlite3 someone's tests may be using).
            connection.settings_dict.setdefault("TEST", {})["NAME"] = str(Path(tmp) / "bench.sqlite3")
            connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        else:
            call_command("migrate", verbosity=0)
        try:
            path = Path(tmp) / "bench.jsonl"
            size = rows_write(path, args.rows, words=args.words)
            project = Project.objects.create(name=f"import bench {uuid.uuid4().hex[:8]}")
            chunks: list[int] = []
            backend_pid = None
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    (backend_pid,) = cursor.fetchone()
            if args.server_only:
                server_only(path, project, backend_pid, args.rows, args.chunk_size or DEFAULT_CHUNK_SIZE)
                return
            backend_start, cpu_start = backend_cpu_seconds(backend_pid), os.times()
            start = time.perf_counter()
            result = items_import(project=project, path=path, fmt="pairs",
                                  chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE, progress=chunks.append)
            seconds = time.perf_counter() - start
            cpu_end, backend_end = os.times(), backend_cpu_seconds(backend_pid)
            python_cpu = cpu_end.user - cpu_start.user + cpu_end.system - cpu_start.system
            backend = (f"{(backend_end - backend_start) / args.rows * 1e6:.1f}"
                       if backend_start is not None and backend_end is not None else "n/a")
            assert result.items == args.rows == PairItem.objects.filter(project=project).count()
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"database={connection.vendor} rows={result.rows} file_mb={size / 2**20:.1f} "
                  f"bytes_per_row={size / args.rows:.0f} chunks={len(chunks)} seconds={seconds:.2f} "
                  f"max_rss_mb={rss_mb:.0f}")
            print(f"cpu_us_per_row: python={python_cpu / args.rows * 1e6:.1f} database_backend={backend} "
                  f"wall={seconds / args.rows * 1e6:.1f}")
            if not own_database and not args.keep:
                # Plain SQL: the ORM's delete would first load every row to cascade in Python.
                tables = {m: connection.ops.quote_name(m._meta.db_table) for m in (PairItem, Completion, Prompt)}
                with connection.cursor() as cursor:
                    if connection.vendor == "postgresql":
                        # Fresh statistics first: the foreign-key checks of the deletes are planned
                        # from them (a server without autovacuum may have none and plan full scans).
                        cursor.execute(f"ANALYZE {', '.join(tables.values())}")
                    cursor.execute(f"DELETE FROM {tables[PairItem]} WHERE project_id = %s", [project.pk])
                    cursor.execute(f"DELETE FROM {tables[Completion]} WHERE prompt_id IN "
                                   f"(SELECT id FROM {tables[Prompt]} WHERE project_id = %s)", [project.pk])
                    cursor.execute(f"DELETE FROM {tables[Prompt]} WHERE project_id = %s", [project.pk])
                    project.delete()
                    if connection.vendor == "postgresql":
                        # Reclaim the deleted rows, so that runs do not pile up dead ones (autovacuum
                        # may be off on a benchmark server).
                        cursor.execute(f"VACUUM ANALYZE {', '.join(tables.values())}")
        finally:
            if own_database:
                connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
    print(f"import_rows_per_s={result.rows / seconds:.0f}")


def server_only(path: Path, project, backend_pid: int | None, rows: int, chunk_size: int) -> None:
    """The importer's own COPY data for the whole file, encoded before the clock starts, then sent
    chunk by chunk in one transaction that is rolled back."""
    import itertools
    import threading

    from django.db import connection, transaction

    from annotate.importers import _PostgresCopyWriter
    from prefdata.readers import read

    if connection.vendor != "postgresql":
        raise SystemExit("--server-only needs DATABASE_URL=postgres://...")
    with transaction.atomic():
        writer = _PostgresCopyWriter(project=project, source="bench", progress=None)
        pairs, encoded = read(path, "pairs", kind="pairs"), []
        while chunk := list(itertools.islice(pairs, chunk_size)):
            encoded.append(writer._encode(chunk, *writer._ids(len(chunk))))
        backend_start, start = backend_cpu_seconds(backend_pid), time.perf_counter()
        for data in encoded:
            writer._store(data, threading.Event())
        seconds, backend_end = time.perf_counter() - start, backend_cpu_seconds(backend_pid)
        writer.close()
        transaction.set_rollback(True)
    project.delete()
    backend = (f"{(backend_end - backend_start) / rows * 1e6:.1f}"
               if backend_start is not None and backend_end is not None else "n/a")
    print(f"server only: {rows} rows in {seconds:.2f} s; cpu_us_per_row: database_backend={backend} "
          f"wall={seconds / rows * 1e6:.1f}")
    print(f"server_only_rows_per_s={rows / seconds:.0f}")


if __name__ == "__main__":
    main()
