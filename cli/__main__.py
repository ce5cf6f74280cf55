"""``python -m cli nodes --stack dev``: the entry point of ``cli.nodes``."""

import sys

from cli.nodes import main

if __name__ == "__main__":
    sys.exit(main())
