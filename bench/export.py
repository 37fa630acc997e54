"""Export speed and memory of a preference snapshot (training.exporting) on PostgreSQL.

    .venv/bin/python bench/export.py --rows 1000000

1. creates a fresh database (default ``exportbench`` on the local PostgreSQL) and migrates it;
2. fills it directly with COPY: ``--rows`` prompts, two completions each (200-600 characters), one pair
   item each and one human label each (A or B, most graded; every 50th a tie, every 97th both-bad);
   foreign-key triggers are off during the fill (``session_replication_role``), it is not what is timed;
3. in a child process of its own, exports a preference snapshot to JSON Lines through the real code path
   (``training.services.snapshot_create``) and reports the time and that process's peak RSS (ru_maxrss),
   so the fill does not count.

The last line holds the figures: ``rows=... seconds=... rows_per_s=... peak_rss_mb=...``. ``--reuse`` skips
steps 1-2 when the database already holds a filled project of that many pairs. ``--profile`` runs the
export under cProfile in the child and prints the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PROJECT = "export-bench"
WORDS = ("the model answer is clear because each step follows from the previous one and we check it again "
         "with a small example before writing out a final result for the user ; café naïve 中文 déjà vu , "
         "therefore 42 = 6 * 7 . (see above) 'quoted'").split(" ")


def env_for(database_url: str, media: str) -> dict:
    return {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789", "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING", "MEDIA_ROOT": media}


def fresh_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _corpus(rng: random.Random, chars: int) -> str:
    """A long run of words to slice texts from (no tab, newline or backslash: COPY text needs no escapes)."""
    return " ".join(rng.choices(WORDS, k=chars // 4))[:chars]


def fill(rows: int) -> None:
    """``rows`` pairs with one label each, in the project PROJECT (Django set up by the caller)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotate.models import Completion, PairItem, PairLabel, Project, Prompt

    rng = random.Random(0)
    corpus = _corpus(rng, 1 << 20)
    now = "2025-01-01 00:00:00+00"
    user = get_user_model().objects.create(username="bench-annotator")
    project = Project.objects.create(name=PROJECT)

    def text(i: int) -> str:
        length = rng.randint(200, 600)
        start = rng.randrange(0, len(corpus) - length)
        return f"{i}: {corpus[start:start + length]}".replace('"', "'")

    table = {m: m._meta.db_table for m in (Prompt, Completion, PairItem, PairLabel)}
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # the psycopg cursor, for COPY
        cursor.execute("SET LOCAL session_replication_role = replica")  # no foreign-key triggers while filling
        columns = {
            Prompt: "id, project_id, messages, source, metadata, created_at",
            Completion: "id, prompt_id, text, model_name, sampling, created_at",
            PairItem: "id, project_id, prompt_id, completion_a_id, completion_b_id, is_gold, gold_verdict, "
                      "final_verdict, created_at",
            PairLabel: "id, item_id, annotator_id, verdict, strength, rationale, criteria, shown_order, "
                       "created_at, updated_at",
        }
        block = 20_000
        for model in (Prompt, Completion, PairItem, PairLabel):
            with cursor.copy(f'COPY "{table[model]}" ({columns[model]}) FROM STDIN') as copy:
                lines: list[str] = []
                for i in range(1, rows + 1):
                    if model is Prompt:
                        content = json.dumps(text(i), ensure_ascii=False)
                        messages = f'[{{"role": "user", "content": {content}}}]'
                        lines.append(f"{i}\t{project.pk}\t{messages}\tbench\t{{}}\t{now}\n")
                    elif model is Completion:
                        lines.append(f"{2 * i - 1}\t{i}\t{text(i)}\tbench-a\t{{}}\t{now}\n"
                                     f"{2 * i}\t{i}\t{text(i)}\tbench-b\t{{}}\t{now}\n")
                    elif model is PairItem:
                        lines.append(f"{i}\t{project.pk}\t{i}\t{2 * i - 1}\t{2 * i}\tf\t\t\t{now}\n")
                    else:
                        verdict = "tie" if i % 50 == 0 else "both_bad" if i % 97 == 0 else "AB"[i % 2]
                        strength = "\\N" if verdict in ("tie", "both_bad") or i % 5 == 0 else rng.randint(1, 4)
                        lines.append(f"{i}\t{i}\t{user.pk}\t{verdict}\t{strength}\t\t{{}}\tAB\t{now}\t{now}\n")
                    if len(lines) >= block:
                        copy.write("".join(lines))
                        lines.clear()
                copy.write("".join(lines))
        for model in (Prompt, PairItem, PairLabel):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('\"{table[model]}\"', 'id'), {rows})")
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('\"{table[Completion]}\"', 'id'), {2 * rows})")
    with connection.cursor() as cursor:
        for model in (Prompt, Completion, PairItem, PairLabel):
            cursor.execute(f'VACUUM ANALYZE "{table[model]}"')
    print(f"filled {rows} pairs with one label each in {time.perf_counter() - started:.1f} s", flush=True)


def export(profile: bool) -> None:
    """Time one preference snapshot of the bench project; print seconds, rows and this process's peak RSS."""
    import resource

    from annotate.models import Project
    from training.services import snapshot_create, snapshot_path

    project = Project.objects.get(name=PROJECT)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        snapshot = profiler.runcall(snapshot_create, project=project, source="human")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    else:
        snapshot = snapshot_create(project=project, source="human")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    size = snapshot_path(snapshot=snapshot).stat().st_size
    print(json.dumps({"rows": snapshot.rows, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
                      "rss_before_mb": rss_before, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "file_mb": size / 2**20, "dropped": snapshot.dropped}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="exportbench")
    parser.add_argument("--reuse", action="store_true", help="keep a database already filled with --rows pairs")
    parser.add_argument("--profile", action="store_true", help="cProfile the export (slower; figures not comparable)")
    parser.add_argument("--child", choices=["fill", "export"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        fill(args.rows) if args.child == "fill" else export(args.profile)
        return

    database_url = args.admin_url.rsplit("/", 1)[0] + "/" + args.database
    with tempfile.TemporaryDirectory() as media:
        env = env_for(database_url, media)
        if not (args.reuse and _filled(database_url, args.rows)):
            fresh_database(args.admin_url, args.database)
            subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
            subprocess.run([PY, __file__, "--child", "fill", "--rows", str(args.rows)], env=env, check=True)
        child = [PY, __file__, "--child", "export", "--rows", str(args.rows)] + (["--profile"] if args.profile else [])
        out = subprocess.run(child, env=env, check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    figures = json.loads(lines[-1])
    print("\n".join(lines[:-1]))
    print(f"export: {figures['rows']} rows in {figures['seconds']:.2f} s, file {figures['file_mb']:.0f} MiB, "
          f"process CPU {figures['cpu_s']:.1f} s, RSS before the export {figures['rss_before_mb']:.0f} MB, "
          f"dropped {figures['dropped']}")
    print(f"rows={figures['rows']} seconds={figures['seconds']:.2f} "
          f"rows_per_s={figures['rows'] / figures['seconds']:.0f} peak_rss_mb={figures['peak_rss_mb']:.0f}")


def _filled(database_url: str, rows: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(database_url) as conn:
            found = conn.execute("SELECT count(*) FROM annotate_pairitem i JOIN annotate_project p "
                                 "ON p.id = i.project_id WHERE p.name = %s", [PROJECT]).fetchone()
    except psycopg.Error:
        return False
    return found is not None and found[0] == rows


if __name__ == "__main__":
    main()
