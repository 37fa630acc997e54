"""A template per mode: a judge's one template goes to the field of its mode, the other two get their
defaults. A judge remembers the constitution version its template version was made with."""

from django.db import migrations, models

TEMPLATE_FIELDS = {"pairwise": "pairwise_template", "pointwise": "pointwise_template", "steps": "step_template"}

# The old field's default (judges 0001): a pointwise or steps judge that still has it never chose it.
OLD_DEFAULT = ('Compare two responses to the conversation below and decide which one is better:\nmore helpful, '
               'correct and harmless.\n\n[Conversation]\n{conversation}\n\n[Response A]\n{response_a}\n\n'
               '[Response B]\n{response_b}\n\n{question} Answer with one letter, A or B.')


def templates_split(apps, schema_editor):
    Judge = apps.get_model("judges", "Judge")
    for judge in Judge.objects.select_related("constitution"):
        updates = {"constitution_version": judge.constitution.version if judge.constitution_id else None}
        if judge.mode not in TEMPLATE_FIELDS:
            pass
        elif judge.mode != "pairwise" and judge.template == OLD_DEFAULT:
            # It sent the pairwise template's "{response_a}" to the model as text: it keeps its mode's
            # default template instead, and judges again under a new version.
            updates["template_version"] = judge.template_version + 1
        else:
            updates[TEMPLATE_FIELDS[judge.mode]] = judge.template
        Judge.objects.filter(pk=judge.pk).update(**updates)


def templates_join(apps, schema_editor):
    Judge = apps.get_model("judges", "Judge")
    for judge in Judge.objects.all():
        if judge.mode in TEMPLATE_FIELDS:
            Judge.objects.filter(pk=judge.pk).update(template=getattr(judge, TEMPLATE_FIELDS[judge.mode]))


class Migration(migrations.Migration):

    dependencies = [
        ('judges', '0003_constitutions_to_synth'),
    ]

    operations = [
        migrations.AddField(
            model_name='judge',
            name='constitution_version',
            field=models.PositiveIntegerField(blank=True, editable=False, help_text="The constitution's version when the template version was set: when the constitution moves on, the judge takes a new template version (judges.services.judge_version_sync).", null=True),
        ),
        migrations.AddField(
            model_name='judge',
            name='pairwise_template',
            field=models.TextField(default='Compare two responses to the conversation below and decide which one is better:\nmore helpful, correct and harmless.\n\n[Conversation]\n{conversation}\n\n[Response A]\n{response_a}\n\n[Response B]\n{response_b}\n\n{question} Answer with one letter, A or B.', help_text='Placeholders: {conversation}, {response_a}, {response_b}, {question}; needs {response_a} and {response_b}.'),
        ),
        migrations.AddField(
            model_name='judge',
            name='pointwise_template',
            field=models.TextField(default='Rate the response to the conversation below for how helpful, correct and harmless it is.\n\n[Conversation]\n{conversation}\n\n[Response]\n{response}\n\n{question} Answer with a number from 1 (worst) to 10 (best).', help_text='Placeholders: {conversation}, {response}, {question}; needs {response}.'),
        ),
        migrations.AddField(
            model_name='judge',
            name='step_template',
            field=models.TextField(default='Check a solution to the problem below one step at a time.\n\n[Problem]\n{conversation}\n\n[Solution so far]\n{steps}\n\nIs step {number} correct and a sound continuation of the steps before it? Answer Yes or No.', help_text='Placeholders: {conversation}, {steps}, {number}, {step}; needs {steps} or {step}.'),
        ),
        migrations.RunPython(templates_split, templates_join),
        migrations.RemoveField(
            model_name='judge',
            name='template',
        ),
    ]
