"""``python -m mitotype``: the ``mitotype`` command where no console script is on the PATH (a bare
checkout with ``PYTHONPATH=src``, as on a lent GPU machine)."""

import sys

from mitotype.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
