FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
COPY pyproject.toml README.md ./
COPY config config
COPY annotate annotate
COPY synth synth
COPY judges judges
COPY training training
COPY templates templates
COPY static static
COPY manage.py ./
# torch pinned first (a GPU build: workers and trainers of a deployment run on GPUs).
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -e . \
 && SECRET_KEY=build python manage.py collectstatic --noinput
