"""`python -m pgqueue`: the kit's command line (see pgqueue.cli)."""

import sys

from pgqueue.cli import main

if __name__ == "__main__":
    sys.exit(main())
