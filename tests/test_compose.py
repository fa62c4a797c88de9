"""The Docker Compose sandbox, checked without a Docker engine: config, structure, and its commands."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import psycopg

from pgqueue import children, server
from pgqueue.queues import labs, single_call
from pgqueue.wait import until
from tests.conftest import REPO
from tests.tools import require

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
MACHINE_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
KIT_SERVICES = ("setup", "reset", "lab", "worker", "demo")


def _tool() -> str:
    found = shutil.which("docker-compose")
    require("docker-compose", found is not None, "apt-get install --no-install-recommends docker-compose")
    return found


def resolved(**env: str) -> dict:
    """The compose file as docker-compose resolves it (variables filled in, profiles included)."""
    require("PyYAML", importlib.util.find_spec("yaml") is not None, "pip install -r requirements-dev.txt")
    import yaml

    return yaml.safe_load(_config(env).stdout)


def _config(env: dict, *args: str) -> subprocess.CompletedProcess:
    """`docker-compose config` on the compose file with `env` added, which must validate."""
    result = subprocess.run(
        [_tool(), "-f", str(COMPOSE), "config", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_config_validates_with_and_without_a_token():
    for env in ({}, {"JUPYTER_TOKEN": "abc123"}):
        _config(env, "-q")


def test_every_file_the_sandbox_needs_exists():
    config = resolved()
    for name in KIT_SERVICES:
        build = config["services"][name]["build"]
        assert os.path.isdir(build["context"]) and os.path.isfile(
            os.path.join(build["context"], "Dockerfile")
        )
    mounts = {
        (v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2])
        for v in config["services"]["lab"]["volumes"]
    }
    assert (str(REPO), "/home/learner/kit") in mounts  # the repository: saved notebooks persist
    for volume in config["services"]["lab"]["volumes"]:
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        assert os.path.exists(source), source
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                if not source.startswith("--"):
                    assert (REPO / source).exists(), line
    assert (REPO / ".dockerignore").is_file()


def _base_image_default() -> str:
    """The Dockerfile's default base image: the ARG that its FROM names."""
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM (\S+)$", text, re.MULTILINE)
    arg = re.fullmatch(r"\$\{(\w+)\}", base)
    if arg is None:
        return base
    (default,) = re.findall(rf"^ARG {arg.group(1)}=(\S+)$", text, re.MULTILINE)
    return default


def test_images_are_pinned():
    config = resolved()
    for name, service in config["services"].items():
        image = service.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), (name, image)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-[\w-]+", _base_image_default())


def test_official_images_are_the_defaults_and_a_variable_replaces_each():
    config = resolved()
    assert config["services"]["db"]["image"] == "postgres:18.1-bookworm"
    for name in KIT_SERVICES:
        assert config["services"][name]["build"]["args"]["PYTHON_IMAGE"] == _base_image_default(), name
    other = resolved(POSTGRES_IMAGE="mirror/postgres:18", PYTHON_IMAGE="mirror/python:3.12")["services"]
    assert other["db"]["image"] == "mirror/postgres:18"
    assert {other[name]["build"]["args"]["PYTHON_IMAGE"] for name in KIT_SERVICES} == {"mirror/python:3.12"}


def test_published_ports_bind_to_loopback_only():
    for name, service in resolved()["services"].items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), (name, port)


def test_the_image_installs_requirements_before_the_kit_and_runs_as_a_normal_user():
    # one instruction a line: continuation lines joined
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    installs = next(i for i, line in enumerate(lines) if "pip install" in line and "requirements" in line)
    copies_code = next(i for i, line in enumerate(lines) if line.startswith("COPY") and "pgqueue/" in line)
    # editing a .py file must not reinstall every dependency: they come in an earlier layer
    assert installs < copies_code
    assert [line for line in lines[:installs] if line.startswith("COPY")] == ["COPY requirements.txt ./"]
    assert any(re.match(r"^RUN pip install .*--no-deps -e \.", line) for line in lines[copies_code:])
    assert re.search(r"^USER (?!root)\w+", "\n".join(lines), re.MULTILINE)


def test_postgres_keeps_its_data_on_a_named_volume_where_18_expects_it():
    config = resolved()
    (volume,) = config["services"]["db"]["volumes"]
    target = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
    assert target == "/var/lib/postgresql" and "pgdata" in config["volumes"]
    assert config["services"]["db"]["image"].startswith("postgres:18")
    assert "pg_isready" in " ".join(config["services"]["db"]["healthcheck"]["test"])


def test_kit_services_wait_for_a_healthy_database_and_also_wait_themselves():
    services = resolved()["services"]
    for name in KIT_SERVICES:
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy", name
        # podman-compose with podman < 4.6 ignores service_healthy: the kit waits on its own
        assert float(services[name]["environment"]["PGQUEUE_WAIT_FOR_DB"]) >= 60, name
    # no service requires one that exits (podman < 4.6 cannot start such a container); the
    # worker waits for the lab that setup builds
    assert set(services["worker"]["depends_on"]) == {"db"}


def test_the_dsn_given_to_the_kit_is_one_pgqueue_accepts():
    services = resolved(POSTGRES_USER="alice", POSTGRES_PASSWORD="s3cret", POSTGRES_DB="queue")["services"]
    for name in KIT_SERVICES:
        dsn = services[name]["environment"]["PGQUEUE_DSN"]
        srv = server.Server("dsn", dsn)
        assert psycopg.conninfo.conninfo_to_dict(dsn) == {
            "user": "alice",
            "password": "s3cret",
            "host": "db",
            "port": "5432",
            "dbname": "queue",
        }
        assert "s3cret" not in srv.describe()
    lab = services["lab"]
    assert lab["environment"]["JUPYTER_TOKEN"] == ""  # by default: JupyterLab makes a random token
    from pgqueue.cli import jupyter_env

    assert "JUPYTER_TOKEN" not in jupyter_env({"JUPYTER_TOKEN": ""})
    assert jupyter_env({"JUPYTER_TOKEN": "t"})["JUPYTER_TOKEN"] == "t"


def here(command: list[str]) -> list[str]:
    """A container's command, run here: its `python` is the image's interpreter, here it is ours."""
    assert command[0] == "python", command
    return [sys.executable, *command[1:]]


def _machine_pg() -> str:
    try:
        psycopg.connect(MACHINE_PG, connect_timeout=3).close()
        answers = True
    except psycopg.OperationalError:
        answers = False
    # a server of the machine's own, as the compose file's `db` service is to the containers
    require("PostgreSQL on 127.0.0.1:5432", answers, f"apt-get install postgresql, answering at {MACHINE_PG}")
    return MACHINE_PG


def test_the_containers_commands_carry_jobs_through_pgqueue_dsn(monkeypatch):
    dsn = _machine_pg()
    env = {"PGQUEUE_DSN": dsn}
    services = resolved()["services"]
    setup = subprocess.run(
        here(services["setup"]["command"]),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=60,
    )
    assert setup.returncode == 0, setup.stderr
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    workers = []
    try:
        for process, version in (
            ("first_process", "1.9.2"),
            ("second_process", "2.2.0"),
            ("third_process", "5.3.0"),
        ):
            command = resolved(WORKER_PROCESS=process, WORKER_VERSION=version)["services"]["worker"][
                "command"
            ]
            workers.append(
                children.spawn(here(command), env={**os.environ, **env}, cwd=REPO, stdout=subprocess.DEVNULL)
            )
        until(
            lambda: single_call.pipe_jobs().set_index("pipe_job_id").loc[4, "pipe_job_finished"],
            60,
            "pipeline 2's pipe job finishing through the three worker commands",
        )
        assert single_call.pipe_jobs().set_index("pipe_job_id").loc[4, "jobs"] == 3
    finally:
        for proc in workers:
            children.stop(proc)
        labs.drop("single-call")  # and its template: this server outlives the run


def test_up_again_keeps_the_lab_and_the_reset_profile_rebuilds_it(monkeypatch):
    dsn = _machine_pg()
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    services = resolved()["services"]
    assert services["reset"]["profiles"] == ["reset"]

    def run(service: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            here(services[service]["command"]),
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PGQUEUE_DSN": dsn},
            timeout=60,
        )

    try:
        first = run("setup")  # the first `docker compose up`
        assert first.returncode == 0 and "rebuilt" in first.stdout, first.stderr
        made = single_call.submit(1)  # the learner's own work
        again = run("setup")  # `docker compose up` once more
        assert again.returncode == 0 and "kept" in again.stdout, again.stderr
        assert made in single_call.pipe_jobs()["pipe_job_id"].tolist()
        rebuilt = run("reset")
        assert rebuilt.returncode == 0 and "rebuilt" in rebuilt.stdout, rebuilt.stderr
        assert made not in single_call.pipe_jobs()["pipe_job_id"].tolist()
    finally:
        labs.drop("single-call")  # and its template: this server outlives the run
