"""Run as `python -m pgqueue.server.watchdog HOME`: stops that home's embedded server after its last user."""

import contextlib
import os
import sys
from pathlib import Path

from pgqueue import paths
from pgqueue.server import embedded
from pgqueue.server.home import HomeGone, Layout


def main(argv: list[str]) -> None:
    """Detach from the caller (fork, new session), record the pid, then watch."""
    lay = Layout(Path(argv[0]))
    child = os.fork()
    if child:
        # The caller waits for this short-lived parent only; the watchdog itself is adopted by
        # init, so nobody has to reap it.
        paths.write_private(lay.watchdog_pid, str(child))
        os._exit(0)
    os.setsid()
    with contextlib.suppress(HomeGone):
        embedded.watch(lay)


if __name__ == "__main__":
    main(sys.argv[1:])
