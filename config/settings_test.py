"""Test settings: the real settings with a fixed key, eager-capable Celery and no hub access."""

import os

os.environ.setdefault("SECRET_KEY", "insecure-key-for-tests-only")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Tests never share a broker folder with a running development worker.
if "CELERY_BROKER_DIR" not in os.environ:
    os.environ["CELERY_BROKER_DIR"] = os.path.join(
        os.environ.get("VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var")), "test-broker")

from config.settings import *  # noqa: E402,F403

SECURE_SSL_REDIRECT = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)  # noqa: F405

# The suite sends many requests from one user and one address: the limits are tested on their own
# (tests/annotate/test_roles.py sets them).
API_THROTTLE_RATES = {scope: None for scope in API_THROTTLE_RATES}  # noqa: F405
