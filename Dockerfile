# syntax=docker/dockerfile:1
# Two targets: `export` (LeRobot + torch, one-shot) and the default `orchestrator`
# (the API and control loops: no torch, small, non-root).

FROM python:3.12-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY export ./export
COPY arena_server ./arena_server
COPY sim_robot ./sim_robot
COPY local_stack ./local_stack
# /jobs and /hf: mount points of the export jobs and hub cache volumes, owned by app so
# fresh named volumes are writable from both images.
RUN useradd --create-home --uid 10001 app && mkdir -p /jobs /hf && chown app:app /jobs /hf

FROM base AS export
RUN pip install ".[export]"
USER app
ENTRYPOINT ["python", "-m", "export"]

FROM base AS orchestrator
# Core dependencies only: what the orchestrator needs at run time.
RUN pip install .
USER app
EXPOSE 8001
ENV ORCHESTRATOR_HOST=0.0.0.0 ORCHESTRATOR_PORT=8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=2)"]
CMD ["python", "-m", "orchestrator"]
