"""Configuration from the environment, deployment checks, and a web process free of heavy imports."""

import os
import subprocess
import sys

from django.conf import settings

BASE = {k: v for k, v in os.environ.items() if k not in {
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL",
    "CELERY_BROKER_DIR", "MEDIA_ROOT", "MODELS_ROOT", "STATIC_ROOT", "DJANGO_ALLOW_ASYNC_UNSAFE"}}


def run(code_or_args, **env):
    args = code_or_args if isinstance(code_or_args, list) else [sys.executable, "-c", code_or_args]
    return subprocess.run(args, cwd=settings.BASE_DIR, env={**BASE, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
                          capture_output=True, text=True, timeout=120)


def test_deploy_check_is_clean_in_production_settings(tmp_path):
    result = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 SECRET_KEY="x7#Lq2!vR9@pZ4$wK8^mN3&bT6*yH1(cF5)jD0-sG2+eA7=uQ9", ALLOWED_HOSTS="prefs.example.org",
                 VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_secret_key_is_required_without_debug(tmp_path):
    result = run("import django; django.setup()", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_generates_a_development_key_once(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = run(code, DEBUG="1", VAR_DIR=str(tmp_path))
    second = run(code, DEBUG="1", VAR_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 50
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.strip()


def test_database_and_broker_come_from_the_environment(tmp_path):
    code = ("from django.conf import settings; d = settings.DATABASES['default'];"
            "print(d['ENGINE'], d['NAME'], d['HOST'], settings.CELERY_BROKER_URL, sep='|')")
    result = run(code, DEBUG="1", VAR_DIR=str(tmp_path), DATABASE_URL="postgres://u:p@db.internal:5433/prefs",
                 CELERY_BROKER_URL="redis://cache:6379/1")
    assert result.stdout.strip().split("|") == ["django.db.backends.postgresql", "prefs", "db.internal", "redis://cache:6379/1"]
    default = run(code, DEBUG="1", VAR_DIR=str(tmp_path))
    engine, name, _host, broker = default.stdout.strip().split("|")
    assert engine == "django.db.backends.sqlite3" and name == str(tmp_path / "db.sqlite3") and broker == "filesystem://localhost/"


def test_web_process_does_not_import_heavy_libraries(tmp_path):
    code = """
import sys, django
django.setup()
from django.test import Client
from django.urls import reverse
import config.wsgi, config.urls
from django.contrib.auth.models import User
Client().get("/accounts/login/")
heavy = sorted(m for m in ("torch", "transformers", "trl", "datasets", "accelerate") if m in sys.modules)
print("heavy:", heavy)
"""
    result = run(code, DEBUG="1", VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout


def test_migrations_match_the_models(tmp_path):
    result = run([sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"], DEBUG="1",
                 VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_job_time_limits_and_the_visibility_timeout_fit_together():
    """Every job task has a soft time limit of its kind and a hard one a margin later; the broker hands
    an unacknowledged message to another worker only after the longest hard limit; a dead worker's job is
    noticed (lease + check interval) well within two minutes by default."""
    from annotate.tasks import import_job_run_task
    from judges.tasks import judge_run_execute_task
    from synth.tasks import synthesis_job_run_task
    from training.tasks import snapshot_job_run_task, training_job_run_task

    tasks = {"import": import_job_run_task, "synthesis": synthesis_job_run_task, "judge": judge_run_execute_task,
             "training": training_job_run_task, "snapshot": snapshot_job_run_task}
    assert set(tasks) == set(settings.JOB_TIME_LIMITS)
    for kind, task in tasks.items():
        assert task.acks_late and task.reject_on_worker_lost
        assert task.soft_time_limit == settings.JOB_TIME_LIMITS[kind]
        assert task.soft_time_limit < task.time_limit < settings.CELERY_BROKER_VISIBILITY_TIMEOUT
    result = run("from django.conf import settings as s; import django; django.setup(); "
                 "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'])",
                 SECRET_KEY="k", CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert int(result.stdout) == settings.CELERY_BROKER_VISIBILITY_TIMEOUT, result.stderr
    assert settings.JOB_HEARTBEAT_SECONDS * 3 <= settings.JOB_LEASE_SECONDS  # a late beat or two is no death
    assert settings.JOB_LEASE_SECONDS + settings.JOB_REAP_SECONDS <= 120


def test_the_filesystem_broker_keeps_its_files_under_var(tmp_path):
    result = run("from django.conf import settings as s; import django; django.setup(); "
                 "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['control_folder'])",
                 SECRET_KEY="k", VAR_DIR=str(tmp_path))
    assert result.stdout.strip() == str(tmp_path / "broker" / "control"), result.stderr


def test_the_csp_fast_path_gives_django_csp_s_own_header(rf, settings):
    """The policy built once equals the one django-csp builds for each response; path rules and nonces
    still go through django-csp."""
    from csp.middleware import CSPMiddleware
    from django.http import HttpResponse

    from config.csp import PathCSPMiddleware

    def answer(request):
        return HttpResponse("ok")

    for path in ("/projects/1/", "/api/projects/"):
        ours, theirs = PathCSPMiddleware(answer)(rf.get(path)), CSPMiddleware(answer)(rf.get(path))
        assert ours["Content-Security-Policy"] == theirs["Content-Security-Policy"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    assert PathCSPMiddleware(answer)(rf.get("/x/"))["Content-Security-Policy"] == "default-src 'none'"
    docs = PathCSPMiddleware(answer)(rf.get("/api/docs/"))["Content-Security-Policy"]
    assert "data:" in docs  # the docs' own allowance


def test_a_fresh_shell_reads_the_development_env_file_and_the_environment_wins(tmp_path):
    """What bin/setup writes lets ``manage.py check`` run in a terminal that set nothing; a variable set in
    the environment wins over the file; under pytest and in CI no .env is read."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("# written by bin/setup\nDEBUG=1\nSECRET_KEY=key-from-the-dotenv-file-" + "x" * 40 + "\n")
    shell = {k: v for k, v in BASE.items() if k not in {"PYTEST_VERSION", "CI"}}

    def fresh(args, **env):
        return subprocess.run(args, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120,
                              env={**shell, "DOTENV_FILE": str(dotenv), "VAR_DIR": str(tmp_path), **env})

    check = fresh([sys.executable, "manage.py", "check"])
    assert check.returncode == 0, check.stdout + check.stderr
    code = "from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY, sep='|')"
    from_file = fresh([sys.executable, "-c", code], DJANGO_SETTINGS_MODULE="config.settings")
    assert from_file.stdout.strip() == "True|key-from-the-dotenv-file-" + "x" * 40, from_file.stderr
    from_env = fresh([sys.executable, "-c", code], DJANGO_SETTINGS_MODULE="config.settings", DEBUG="0",
                     SECRET_KEY="key-from-the-environment")
    assert from_env.stdout.strip() == "False|key-from-the-environment", from_env.stderr
    for ignored in ({"CI": "true"}, {"PYTEST_VERSION": "9"}):
        refused = fresh([sys.executable, "manage.py", "check"], **ignored)
        assert refused.returncode != 0 and "SECRET_KEY must be set" in refused.stderr, ignored


def test_bin_setup_writes_a_dotenv_once_and_git_ignores_it():
    setup = (settings.BASE_DIR / "bin" / "setup").read_text()
    assert '[ ! -e .env ] && [ -z "${CI:-}" ]' in setup and "DEBUG=1" in setup and "SECRET_KEY=" in setup
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=settings.BASE_DIR)
    assert ignored.returncode == 0
