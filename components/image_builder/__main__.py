"""``python -m components.image_builder``: the documented entry point of ``cli.image_builder``."""

import sys

from cli.image_builder import main

if __name__ == "__main__":
    sys.exit(main())
