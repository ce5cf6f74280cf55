"""Command line: ``python -m components render --stack dev``.

Validates a stack file offline and prints what the stack will create. Exit
codes: 0 done, 2 bad input (every problem listed, no traceback), 1 a runtime
failure (its traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from cli import add_stack_arguments
from cli.destroy_preview import add_parser as add_destroy_preview
from cli.destroy_preview import destroy_preview
from core.config import ConfigError, Problem, stack_file
from core.errors import EXIT_BAD_INPUT, EXIT_RUNTIME_FAILURE, InputError
from core.render import render_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render", help="validate Pulumi.<stack>.yaml offline and show what it creates"
    )
    add_stack_arguments(render)
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
    render.add_argument(
        "--debug", action="store_true", help="print the traceback of a runtime failure"
    )
    add_destroy_preview(commands)
    args = parser.parse_args(argv)

    try:
        return destroy_preview(args) if args.command == "destroy-preview" else _render(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        hint = "" if args.debug else " (run with --debug for the traceback)"
        print(f"error: {args.command} failed: {detail}{hint}", file=sys.stderr)
        return EXIT_RUNTIME_FAILURE


def _render(args: argparse.Namespace) -> int:
    stack_file(args.project_dir, args.stack)  # refuses names outside Pulumi's rule first
    out: Path = args.out or args.project_dir / "render" / args.stack.rsplit("/", 1)[-1]
    if out.exists() and not out.is_dir():
        raise ConfigError(
            [Problem("", f"--out: {out} is a file; give a folder (it is created if missing)")]
        )
    rendered = render_stack(args.project_dir, args.stack, show_secrets=args.show_secrets)
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
