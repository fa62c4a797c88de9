"""A Docker engine for the sandbox test: Debian's `dockerd`, everything it keeps under one private
folder, a unix socket only (no TCP), and the host's networking as it was once it stops.

    python -m tests.sandbox.dockerd start ROOT     # prints the DOCKER_HOST to export
    python -m tests.sandbox.dockerd stop ROOT [--purge]

ROOT (made 0700) holds `daemon.json`, `data/` (images and build cache: kept between runs, as
podman keeps its images; `--purge` removes it) and `run/` (the socket, pid file, log, trust key
and containerd's state: removed at stop). `.ci/run` starts one before the sandbox test and stops
it after, also on failure. As root only: dockerd needs it.

What dockerd changes on the host while it runs, and `stop` puts back when it did not find it so:
the `docker0` bridge, its iptables chains (DOCKER, DOCKER-USER, DOCKER-ISOLATION-*) and the
rules that jump to them, the FORWARD chain's policy (dockerd sets DROP when it turns IPv4
forwarding on), IPv4 forwarding itself (left on while a podman network still uses it), and the
empty folders /run/docker/plugins and /run/containerd/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

DOCKERD = Path("/usr/sbin/dockerd")  # Debian's docker.io
DOCKER = Path("/usr/bin/docker")  # its CLI (another docker CLI may come first on PATH)
RUN_DIRS = ("/run/docker", "/run/docker/plugins", "/run/containerd", "/run/containerd/s")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
START_DEADLINE = 60.0
STOP_DEADLINE = 60.0


class Failed(Exception):
    """A one-line reason the engine could not be started or stopped."""


def socket_path(root: Path) -> Path:
    return root / "run" / "docker.sock"


def docker_host(root: Path) -> str:
    """The DOCKER_HOST of the engine kept in `root`."""
    return f"unix://{socket_path(root)}"


def answers(host: str, cli: Path = DOCKER) -> str | None:
    """The engine's version when a Docker engine answers at `host`, else None."""
    try:
        shown = subprocess.run(
            [str(cli), "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=20, env={**os.environ, "DOCKER_HOST": host},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shown.stdout.strip() if shown.returncode == 0 and shown.stdout.strip() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped) is gone for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _pid(root: Path) -> int | None:
    try:
        return int((root / "run" / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _iptables(*args: str, check: bool = True) -> str:
    shown = subprocess.run(["iptables", *args], capture_output=True, text=True, timeout=30)
    if check and shown.returncode != 0:
        raise Failed(f"iptables {' '.join(args)} failed: {shown.stderr.strip()}")
    return shown.stdout


def _host_state() -> dict:
    """What dockerd may change on the host, as it is now."""
    chains = {table: [line.split()[1] for line in _iptables("-t", table, "-S").splitlines()
                      if line.startswith("-N ")] for table in ("filter", "nat")}  # fmt: skip
    policy = next(
        line.split()[2] for line in _iptables("-S", "FORWARD").splitlines() if line.startswith("-P")
    )
    return {
        "ip_forward": IP_FORWARD.read_text().strip(),
        "forward_policy": policy,
        "docker0": Path("/sys/class/net/docker0").exists(),
        "chains": chains,
        "dirs": [d for d in RUN_DIRS if os.path.isdir(d)],
    }


def start(root: Path, deadline: float = START_DEADLINE) -> str:
    """Start dockerd on `root` and wait until it answers; the DOCKER_HOST to use."""
    if os.geteuid() != 0:
        raise Failed("dockerd runs as root only (rootless Docker is not set up here)")
    if not DOCKERD.exists() or not DOCKER.exists():
        raise Failed(f"{DOCKERD} or {DOCKER} is missing: apt-get install --no-install-recommends docker.io")
    root = root.resolve()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.chmod(0o700)
    run = root / "run"
    pid = _pid(root)
    if pid is not None and _alive(pid):
        raise Failed(f"a dockerd of {root} runs already (pid {pid}): stop it first")
    if run.exists():
        shutil.rmtree(run)  # what a dockerd killed without `stop` left: it is not running
    run.mkdir(mode=0o700)
    (run / "host-before.json").write_text(json.dumps(_host_state()))
    settings = {
        "data-root": str(root / "data"),
        "exec-root": str(run / "exec"),
        "pidfile": str(run / "dockerd.pid"),
        "hosts": [docker_host(root)],  # a unix socket, and no TCP
        "group": "root",  # the socket is root's only (the default group is `docker`)
        "deprecated-key-path": str(run / "key.json"),  # not /etc/docker/key.json
    }
    (root / "daemon.json").write_text(json.dumps(settings, indent=1) + "\n")
    with open(run / "dockerd.log", "ab") as log:
        process = subprocess.Popen(
            [str(DOCKERD), "--config-file", str(root / "daemon.json")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    host = docker_host(root)
    ends = time.monotonic() + deadline
    while (version := answers(host)) is None:
        if process.poll() is not None:
            raise Failed(f"dockerd exited with {process.returncode} before it answered: {_log_tail(root)}")
        if time.monotonic() > ends:
            process.terminate()
            raise Failed(f"dockerd did not answer at {host} within {deadline:g} s: {_log_tail(root)}")
        time.sleep(0.2)
    print(f"dockerd {version} answers at {host}", file=sys.stderr)
    return host


def _log_tail(root: Path) -> str:
    try:
        lines = (root / "run" / "dockerd.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if "level=error" in line or "level=fatal" in line]
    return (errors or lines or ["empty log"])[-1]


def _processes_under(run: Path) -> list[int]:
    """containerd and its shims started for this engine: their command lines name `run`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(str(run).encode() in arg for arg in argv) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], deadline: float) -> list[int]:
    ends = time.monotonic() + deadline
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < ends:
        time.sleep(0.2)
    return left


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


def _restore_host(before: dict) -> list[str]:
    """Put back what dockerd changed; what was done, one line each."""
    done = []
    if not before["docker0"] and Path("/sys/class/net/docker0").exists():
        subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, timeout=30)
        done.append("removed the docker0 bridge")
    for table in ("filter", "nat"):
        rules = _iptables("-t", table, "-S").splitlines()
        ours = [c for c in (line.split()[1] for line in rules if line.startswith("-N "))
                if c.startswith("DOCKER") and c not in before["chains"][table]]  # fmt: skip
        if not ours:
            continue
        for line in rules:  # the rules of other chains that jump to ours (or name docker0)
            words = line.split()
            if words[0] == "-A" and words[1] not in ours and (set(words) & set(ours) or "docker0" in words):
                _iptables("-t", table, "-D", *words[1:], check=False)
        for chain in ours:
            _iptables("-t", table, "-F", chain, check=False)
        for chain in ours:
            _iptables("-t", table, "-X", chain, check=False)
        done.append(f"removed iptables chains {', '.join(ours)} ({table})")
    policy = before["forward_policy"]
    if _host_state()["forward_policy"] != policy:
        _iptables("-P", "FORWARD", policy)
        done.append(f"FORWARD policy {policy} again")
    # netavark (podman) leaves its empty chains behind; rules in them mean a network in use
    podman_networks = any(line.startswith("-A NETAVARK_FORWARD ") for line in _iptables("-S").splitlines())
    if before["ip_forward"] == "0" and IP_FORWARD.read_text().strip() != "0" and not podman_networks:
        IP_FORWARD.write_text("0\n")
        done.append("IPv4 forwarding off again")
    for folder in reversed(RUN_DIRS):
        if folder not in before["dirs"] and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
    return done


def stop(root: Path, purge: bool = False, deadline: float = STOP_DEADLINE) -> list[str]:
    """Stop the dockerd of `root` (its containers stop with it), its containerd and shims; put the
    host back; remove `run/` (and `data/` with `purge`). What was done, one line each."""
    root = root.resolve()
    run = root / "run"
    done = []
    pid = _pid(root)
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        if _wait_gone([pid], deadline):
            os.kill(pid, signal.SIGKILL)
            _wait_gone([pid], 10)
            done.append(f"dockerd (pid {pid}) did not stop within {deadline:g} s: killed")
        else:
            done.append(f"dockerd (pid {pid}) stopped")
    left = _processes_under(run)
    if left and (left := _wait_gone(left, 15)):
        for other in left:
            os.kill(other, signal.SIGKILL)
        done.append(f"killed what outlived dockerd: pids {left}")
    _unmount_under(root)
    before = run / "host-before.json"
    if before.exists():
        done += _restore_host(json.loads(before.read_text()))
    if run.exists():
        shutil.rmtree(run)
    if purge and (root / "data").exists():
        shutil.rmtree(root / "data")
        done.append(f"removed {root / 'data'}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandbox.dockerd", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("root", type=Path, help="the engine's private folder")
    parser.add_argument("--purge", action="store_true", help="stop: remove its images and data too")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(start(args.root))
        else:
            for line in stop(args.root, purge=args.purge):
                print(f"dockerd stop: {line}", file=sys.stderr)
    except Failed as exc:
        print(f"dockerd {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
