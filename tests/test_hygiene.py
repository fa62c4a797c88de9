"""A SIGKILLed Jupyter kernel that used the kit leaves no worker and no server behind."""

import json
import os
import signal

import psutil
from jupyter_client.manager import start_new_kernel

from pgqueue.server import embedded
from pgqueue.wait import until
from tests.conftest import processes_of

# Run inside the kernel: use the server, start a worker-like child that holds its own
# connection (and lease), and report the pids.
IN_KERNEL = """
import json, os, sys
from pgqueue import children, server
server.resolve()
holder = "from pgqueue import server; import time; c = server.connect(); time.sleep(600)"
child = children.spawn([sys.executable, "-c", holder])
print(json.dumps({"kernel": os.getpid(), "child": child.pid}))
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkilled_kernel_leaves_no_orphan(own_home):
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60, env=dict(os.environ))
    try:
        printed = []
        reply = kc.execute_interactive(
            IN_KERNEL,
            timeout=60,
            output_hook=lambda msg: printed.append(
                msg["content"]["text"] if msg["content"].get("name") == "stdout" else ""
            ),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        pids = json.loads("".join(printed))
        until(
            lambda: pids["child"] in [pid for pid, _ in embedded.status().users],
            30,
            "the child connecting to the kernel's server",
        )
        server_pid = embedded.status().pid

        os.kill(pids["kernel"], signal.SIGKILL)

        until(lambda: not _alive(pids["child"]), 10, "the kernel's child exiting")
        until(lambda: not _alive(server_pid), embedded.GRACE_SECONDS + 10, "the server stopping")
        until(lambda: not processes_of(own_home.home), 5, "every process of that home exiting")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
