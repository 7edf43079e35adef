"""``python -m dbn``: the same as the ``dbn`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
