"""Shared pieces of the training scripts. Plain Python, torch and transformers: no Django.

A script is ``python -m training.ml.<method> --config cfg.json [--field value ...]``: it reads a
dataset file and writes a model directory plus ``metrics.jsonl`` (one JSON object per logged step),
which the Django side reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
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
