"""Constitutions and their principles move to synth (critique and revision there, judging here).

Every row goes across with its id, so the judges' foreign keys stay valid when they are pointed at
synth.Constitution; then the judges tables go. Reversible: the rows come back the same way.
"""

import django.db.models.deletion
from django.core.management.color import no_style
from django.db import migrations, models

MODELS = ("Constitution", "Principle")  # in this order: principles point at constitutions


def _copy(apps, schema_editor, source_app, target_app):
    """INSERT ... SELECT every column, ids and timestamps included, then move the target's id sequences
    past the copied ids (PostgreSQL; SQLite's AUTOINCREMENT follows by itself)."""
    connection = schema_editor.connection
    qn = connection.ops.quote_name
    targets = []
    for name in MODELS:
        source, target = apps.get_model(source_app, name), apps.get_model(target_app, name)
        columns = ", ".join(qn(field.column) for field in target._meta.local_concrete_fields)
        schema_editor.execute(f"INSERT INTO {qn(target._meta.db_table)} ({columns}) "
                              f"SELECT {columns} FROM {qn(source._meta.db_table)}")
        targets.append(target)
    for statement in connection.ops.sequence_reset_sql(no_style(), targets):
        schema_editor.execute(statement)


def constitutions_to_synth(apps, schema_editor):
    _copy(apps, schema_editor, "judges", "synth")


def constitutions_to_judges(apps, schema_editor):
    _copy(apps, schema_editor, "synth", "judges")


def synth_constitutions_clear(apps, schema_editor):
    """Going back: the rows live in judges again, synth keeps none (a later forward copy starts clean)."""
    qn = schema_editor.connection.ops.quote_name
    for name in reversed(MODELS):
        schema_editor.execute(f"DELETE FROM {qn(apps.get_model('synth', name)._meta.db_table)}")


class Migration(migrations.Migration):

    dependencies = [
        ('judges', '0002_job_lifecycle'),
        ('synth', '0003_constitutions'),
    ]

    operations = [
        migrations.RunPython(constitutions_to_synth, synth_constitutions_clear),
        migrations.AlterField(
            model_name='judge',
            name='constitution',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='judges', to='synth.constitution'),
        ),
        # Going back, the rows return before the judges point at judges.Constitution again.
        migrations.RunPython(migrations.RunPython.noop, constitutions_to_judges),
        migrations.DeleteModel(
            name='Principle',
        ),
        migrations.DeleteModel(
            name='Constitution',
        ),
    ]
