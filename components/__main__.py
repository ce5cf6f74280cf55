"""``python -m components render``: the documented entry point of ``cli.render``."""

import sys

from cli.render import main

if __name__ == "__main__":
    sys.exit(main())
