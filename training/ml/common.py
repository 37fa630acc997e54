"""Shared pieces of the training scripts. Plain Python, torch and transformers: no Django.

A script is ``python -m training.ml.<method> --config cfg.json [--field value ...]``: it reads a
dataset file and writes a model directory plus ``metrics.jsonl`` (one JSON object per logged step),
which the Django side reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_CONVERT = {"int": int, "float": float, "bool": lambda s: s.strip().lower() in {"1", "true", "yes"}}


def config_parse(cls: type[T], argv: list[str] | None = None) -> T:
    """Build ``cls`` from ``--config file.json`` and ``--<field> value`` overrides, with --help."""
    parser = argparse.ArgumentParser(description=(cls.__doc__ or "").strip())
    parser.add_argument("--config", help="JSON file with any of the fields below")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        parser.add_argument(f"--{f.name}", dest=f.name, default=None, help=f.metadata.get("help", ""))
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        values.update(json.loads(Path(args.config).read_text()))
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name, type_name in types.items():
        raw = getattr(args, name)
        if raw is not None:
            values[name] = _CONVERT.get(type_name, str)(raw)
    unknown = set(values) - set(types)
    if unknown:
        parser.error(f"unknown config fields: {', '.join(sorted(unknown))}")
    return cls(**values)


def metrics_callback(path: str | Path):
    """A transformers TrainerCallback that appends every log entry to ``path`` as a JSON line."""
    from transformers import TrainerCallback

    out = Path(path)

    class MetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs:
                return
            entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
            with out.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            print(json.dumps({"event": "log", **entry}), flush=True)

    return MetricsCallback()


def say(event: str, **fields: Any) -> None:
    """A machine-readable progress line on stdout."""
    print(json.dumps({"event": event, **fields}), file=sys.stdout, flush=True)


def parent_watch() -> None:
    """Die with the worker that started this script, and take any process this one started along.

    The worker starts a trainer in a process group of its own (so that cancelling a job can stop the
    whole group) with ``TRAINER_PARENT_PID`` set. When that parent dies, SIGKILL included, the group is
    killed: at once on Linux (the kernel sends SIGTERM on the parent's death, ``PR_SET_PDEATHSIG``), and
    within a second elsewhere (a thread watches the parent pid). SIGTERM kills the group too.
    """
    parent = os.environ.get("TRAINER_PARENT_PID")
    if not parent:
        return  # run by hand

    def kill_group(*_: object) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, kill_group)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != int(parent):
        kill_group()  # the parent died before we were watching

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != int(parent):
                kill_group()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def last_checkpoint(directory: str | os.PathLike) -> tuple[str, int] | None:
    """The newest complete ``checkpoint-<step>`` directory under ``directory`` (one with its trainer
    state written, the last file a checkpoint gets), and its step; None when there is none."""
    from pathlib import Path

    found = []
    for path in Path(directory).glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), str(path)))
    if not found:
        return None
    step, path = max(found)
    return path, step


def metrics_keep_until(path: str | os.PathLike, step: int) -> None:
    """Drop the logged metrics after ``step`` (a run resumed from that step logs them again)."""
    from pathlib import Path

    metrics = Path(path)
    if not metrics.exists():
        return
    kept = [line for line in metrics.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    metrics.write_text("".join(line + "\n" for line in kept))
