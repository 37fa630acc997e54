"""prefdata is the bottom layer: it imports no Django and none of the apps, and its vocabulary is the
models' (a test rather than an import, so that the two cannot drift)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_prefdata_imports_no_django_and_no_app():
    code = ("import prefdata.records, prefdata.readers, prefdata.writers, prefdata.stats, prefdata.steps, sys; "
            "assert 'django' not in sys.modules, 'django'; "
            "apps = sorted(m for m in sys.modules if m.split('.')[0] in {'annotate', 'synth', 'judges', 'training'}); "
            "assert not apps, apps")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_vocabulary_is_the_models_choices():
    from annotate.models import Completion, PairLabel, StepItem, StepLabel, Verdict
    from prefdata.records import FINISH_REASONS, MODEL_NAME_MAX, OUTCOMES, STEP_RATINGS, STRENGTHS, VERDICTS
    from prefdata.steps import SPLIT_RULES

    assert VERDICTS == tuple(Verdict.values)
    assert list(STRENGTHS.items()) == PairLabel.Strength.choices
    assert FINISH_REASONS == tuple(StepLabel.FinishReason.values)
    assert OUTCOMES == tuple(StepLabel.Outcome.values)
    assert SPLIT_RULES == tuple(StepItem.SplitRule.values)
    assert STEP_RATINGS == (1, 0, -1, None)
    assert MODEL_NAME_MAX == Completion._meta.get_field("model_name").max_length
    assert MODEL_NAME_MAX == StepItem._meta.get_field("model_name").max_length


def test_export_formats_are_the_snapshot_formats():
    from prefdata.records import RECORD_KINDS
    from prefdata.writers import EXPORT_FORMATS
    from training.models import DatasetSnapshot

    assert list(EXPORT_FORMATS) == DatasetSnapshot.Format.values
    assert [f.description for f in EXPORT_FORMATS.values()] == DatasetSnapshot.Format.labels
    assert all(f.record is None or f.record in RECORD_KINDS for f in EXPORT_FORMATS.values())
