"""The training methods: for each, the script that runs it, the record kind it trains on and its config.

Plain Python (no Django, no torch at import time): the admin, the API and the ``train`` command read
it to check a job before it is queued, and a job's hyper-parameters are only what its author set: the
rest comes from the method's config dataclass, whose defaults are the script's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from training.ml.dpo import DPOScriptConfig

# Config fields the platform sets for every job (the snapshot file, the base model, the output).
PATH_FIELDS = ("dataset", "model", "output_dir")

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    script: str  # the module run as ``python -m <script> --config <file>``
    consumes: str  # the record kind of the rows it trains on (``prefdata.records.RECORD_KINDS``)
    config: type  # its config dataclass: field help, types and defaults
    reference: str = ""

    def fields(self) -> dict[str, dataclasses.Field]:
        """The hyper-parameters a job may set: the config's fields but the paths."""
        return {f.name: f for f in dataclasses.fields(self.config) if f.name not in PATH_FIELDS}

    def defaults(self) -> dict[str, Any]:
        return {name: f.default for name, f in self.fields().items() if f.default is not dataclasses.MISSING}

    def hyperparameters_check(self, values: object) -> dict[str, Any]:
        """``values`` if they are hyper-parameters of this method with values of the right type; else
        ValueError naming each bad one."""
        if not isinstance(values, dict):
            raise ValueError("expected an object {name: value}")
        known = self.fields()
        problems = []
        for name, value in values.items():
            field = known.get(name)
            if field is None:
                problems.append(f"{name}: not a {self.label} hyper-parameter (known: {', '.join(sorted(known))})")
                continue
            types = _TYPES.get(str(field.type), (object,))
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                problems.append(f"{name}: expected {field.type}, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return dict(values)

    def effective(self, values: dict[str, Any]) -> dict[str, Any]:
        """What the script will run with: the defaults, then the job's own values."""
        return {**self.defaults(), **values}

    def help(self) -> str:
        return "; ".join(f"{name} ({f.default!r}): {f.metadata.get('help', '')}" for name, f in self.fields().items()
                         if f.default is not dataclasses.MISSING)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("dpo", "DPO", "training.ml.dpo", "preference", DPOScriptConfig,
           "Rafailov et al. 2023, Direct Preference Optimization, arXiv:2305.18290"),
)}


def method_get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown training method {name!r}; known: {', '.join(METHODS)}") from None


def method_choices() -> list[tuple[str, str]]:
    return [(m.name, m.label) for m in METHODS.values()]
