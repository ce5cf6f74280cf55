"""The command lines: the offline ``render`` and the image builder (no Pulumi engine needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: The repository: where ``Pulumi.yaml`` and the stack files are unless told otherwise.
PROJECT_DIR = Path(__file__).resolve().parent.parent


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """``--stack`` and ``--project-dir``: which stack file a command reads."""
    parser.add_argument("--stack", default="dev", help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument(
        "--project-dir", type=Path, default=PROJECT_DIR, help="folder holding Pulumi.yaml"
    )
