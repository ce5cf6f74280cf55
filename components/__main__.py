"""Command line: ``python -m components render --stack dev``.

Validates a stack file offline and prints what the stack will create; exits
non-zero with every config problem listed when the stack is invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.config import ConfigError
from components.render import render_stack
from components.talos_config import WorkerConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render", help="validate Pulumi.<stack>.yaml offline and show what it creates"
    )
    render.add_argument("--stack", default="dev", help="stack name (reads Pulumi.<stack>.yaml)")
    render.add_argument(
        "--project-dir", type=Path, default=PROJECT_DIR, help="folder holding Pulumi.yaml"
    )
    render.add_argument(
        "--out",
        type=Path,
        help="folder for the rendered files (default: <project-dir>/render/<stack>)",
    )
    render.add_argument(
        "--show-secrets",
        action="store_true",
        help="write secret values (tokens, keys) into the rendered files instead of redacting",
    )
    args = parser.parse_args(argv)

    try:
        rendered = render_stack(args.project_dir, args.stack, show_secrets=args.show_secrets)
    except (ConfigError, WorkerConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    out = args.out or args.project_dir / "render" / args.stack
    out.mkdir(parents=True, exist_ok=True)
    for name, content in sorted(rendered.files.items()):
        (out / name).write_text(content, encoding="utf-8")
    print("\n".join(rendered.report))
    if rendered.files:
        print(f"\nwrote {len(rendered.files)} file(s) to {out}")
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
