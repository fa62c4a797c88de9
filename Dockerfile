# The kit's image for the compose sandbox: JupyterLab and workers, talking to the `db` service.
# PYTHON_IMAGE replaces the base (the sandbox test passes a local stand-in when the official
# image cannot be pulled); the default is the official image the kit is tested against.
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm
FROM ${PYTHON_IMAGE}

# A normal user: JupyterLab and the workers never run as root in the sandbox. The kit's own
# files (its process workers' logs) go to that user's home, not into the repository, which the
# lab service mounts from the host and may not be writable by uid 1000.
RUN useradd --create-home --uid 1000 learner \
 && install -d -o learner -g learner -m 0755 /home/learner/kit
ENV PGQUEUE_HOME=/home/learner/.pgqueue
WORKDIR /home/learner/kit

# Dependencies first, from requirements.txt without its `-e .` line (the kit itself): this
# layer is rebuilt only when requirements.txt changes, not when a .py or .sql file does.
COPY requirements.txt ./
RUN sed '/^-e /d' requirements.txt > /tmp/dependencies.txt \
 && pip install --no-cache-dir -r /tmp/dependencies.txt \
 && rm /tmp/dependencies.txt

# Then the kit, installed editable (as `-e .` does for a learner) without touching its dependencies;
# its SQL first, as pyproject.toml names sql/ as the package pgqueue.sql (and LICENSE as its licence).
COPY --chown=learner:learner pyproject.toml README.md LICENSE ./
COPY --chown=learner:learner pgqueue/ pgqueue/
COPY --chown=learner:learner sql/ sql/
RUN pip install --no-cache-dir --no-deps -e .
COPY --chown=learner:learner notebooks/ notebooks/
USER learner
ENV PYTHONUNBUFFERED=1
EXPOSE 8888
CMD ["python", "-m", "pgqueue", "lab", "--no-browser", "--port", "8888", "--", "--ServerApp.ip=0.0.0.0"]
