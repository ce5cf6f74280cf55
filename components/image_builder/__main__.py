"""CLI for building Talos snapshots without Pulumi, and for cleaning up after a failure.

    python -m components.image_builder build --talos-version v1.11.6 --arch amd64 \\
        --location fsn1 (--schematic-id ID | --extension siderolabs/qemu-guest-agent ...)
    python -m components.image_builder cleanup [--older-than MINUTES | --all]

The token comes from HCLOUD_TOKEN and the API endpoint from HCLOUD_ENDPOINT. The
result is one JSON object on stdout; progress goes to stderr. SIGTERM stops a
build like Ctrl-C: its server, key and unfinished snapshot are deleted first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from datetime import timedelta
from types import FrameType

from components.config import (
    DEFAULT_BUILDER_SERVER_TYPES,
    DEFAULT_EXTENSIONS,
    WRITE_TIMEOUT_MINUTES,
    check_write_timeout,
)
from components.image_builder.api import ApiClient, api_endpoint
from components.image_builder.builder_resources import STALE_AFTER, remove_stale
from components.image_builder.pipeline import BuildError, BuildRequest, Limits, build_image
from components.image_builder.schematic import register_schematic
from components.image_builder.waits import Interrupted

#: Time for cleanup to wait while a leftover is locked by a running action.
CLEANUP_SECONDS = 600.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = os.environ.get("HCLOUD_TOKEN")
    if not token:
        print("error: HCLOUD_TOKEN is not set (a Hetzner Cloud API token)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    client = ApiClient(token, api_endpoint(None))
    try:
        if args.command == "build":
            return _build(client, args)
        return _cleanup(client, timedelta(0) if args.all else timedelta(minutes=args.older_than))
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _build(client: ApiClient, args: argparse.Namespace) -> int:
    schematic_id = args.schematic_id or register_schematic(
        args.factory_url, args.extension or list(DEFAULT_EXTENSIONS)
    )
    request = BuildRequest(
        talos_version=args.talos_version,
        schematic_id=schematic_id,
        architecture=args.arch,
        location=args.location,
        server_type=args.server_type or DEFAULT_BUILDER_SERVER_TYPES[args.arch],
        factory_url=args.factory_url,
        extra_labels=dict(label.split("=", 1) for label in args.label),
        limits=Limits(write=60.0 * args.write_timeout),
    )
    result = build_image(client, request, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(asdict(result), sort_keys=True))
    return 0


def _cleanup(client: ApiClient, older_than: timedelta) -> int:
    """Delete builder servers, keys and unfinished snapshots (by label) of builds that died."""
    removed, left = remove_stale(
        client,
        scope=None,
        older_than=older_than,
        seconds=CLEANUP_SECONDS,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(json.dumps({"removed": [str(item) for item in removed]}))
    if left:
        print(f"error: could not delete {', '.join(map(str, left))}", file=sys.stderr)
        return 1
    return 0


def _write_timeout(text: str) -> int:
    try:
        return check_write_timeout(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.image_builder")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build one Talos snapshot")
    build.add_argument("--talos-version", required=True, help="e.g. v1.11.6")
    source = build.add_mutually_exclusive_group()
    source.add_argument("--schematic-id", help="Image Factory schematic id (64 hex)")
    source.add_argument("--extension", action="append", help="official extension (repeatable)")
    build.add_argument("--arch", choices=["amd64", "arm64"], required=True)
    build.add_argument("--location", required=True, help="e.g. fsn1")
    build.add_argument("--server-type", help="builder type (default cx23 / cax11)")
    build.add_argument("--factory-url", default="https://factory.talos.dev")
    build.add_argument("--label", action="append", default=[], help="extra snapshot label k=v")
    build.add_argument(
        "--write-timeout",
        type=_write_timeout,
        default=WRITE_TIMEOUT_MINUTES,
        help=f"minutes the download and write may take (default {WRITE_TIMEOUT_MINUTES})",
    )
    cleanup = commands.add_parser(
        "cleanup", help="delete leftover builder servers, keys and unfinished snapshots"
    )
    age = cleanup.add_mutually_exclusive_group()
    age.add_argument(
        "--older-than",
        type=float,
        default=STALE_AFTER.total_seconds() / 60,
        metavar="MINUTES",
        help="only leftovers older than this (default: older than any build can run)",
    )
    age.add_argument(
        "--all", action="store_true", help="also those of builds that may still be running"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
