from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('synth', '0005_endpoint_capabilities'),
    ]

    operations = [
        migrations.AlterField(
            model_name='modelendpoint',
            name='kind',
            field=models.CharField(choices=[('transformers', 'Local transformers model (path or hub id)'), ('gguf', 'GGUF file (converted once to safetensors)'), ('openai', 'OpenAI-compatible HTTP server'), ('scorer', 'Reward model: one score per response (local sequence classification)'), ('step_scorer', 'Process reward model: one score per step (local token classification)')], default='transformers', max_length=20),
        ),
    ]
