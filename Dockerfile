# The kit's image for the compose sandbox: JupyterLab and workers, talking to the `db` service.
FROM python:3.12.8-slim-bookworm

# A normal user: JupyterLab and the workers never run as root in the sandbox.
RUN useradd --create-home --uid 1000 learner
WORKDIR /home/learner/kit

# Dependencies first, so editing a notebook does not reinstall them.
COPY --chown=learner:learner requirements.txt pyproject.toml README.md ./
COPY --chown=learner:learner pgqueue/ pgqueue/
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=learner:learner sql/ sql/
COPY --chown=learner:learner notebooks/ notebooks/
USER learner
ENV PYTHONUNBUFFERED=1
EXPOSE 8888
CMD ["python", "-m", "pgqueue", "lab", "--no-browser", "--port", "8888", "--", "--ServerApp.ip=0.0.0.0"]
