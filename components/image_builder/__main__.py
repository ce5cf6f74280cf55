"""CLI for building Talos snapshots without Pulumi, and for cleaning up after a failure.

    python -m components.image_builder build --talos-version v1.11.6 --arch amd64 \\
        --location fsn1 (--schematic-id ID | --extension siderolabs/qemu-guest-agent ...)
    python -m components.image_builder cleanup [--older-than MINUTES]

The token comes from HCLOUD_TOKEN and the API endpoint from HCLOUD_ENDPOINT. The
result is one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from hcloud import Client

from components.config import DEFAULT_BUILDER_SERVER_TYPES, DEFAULT_EXTENSIONS
from components.image_builder.pipeline import (
    BUILDER_LABEL,
    BuildError,
    BuildRequest,
    build_image,
    make_client,
)
from components.image_builder.provider import DEFAULT_ENDPOINT
from components.image_builder.schematic import register_schematic


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = os.environ.get("HCLOUD_TOKEN")
    if not token:
        print("error: HCLOUD_TOKEN is not set (a Hetzner Cloud API token)", file=sys.stderr)
        return 2
    client = make_client(token, os.environ.get("HCLOUD_ENDPOINT") or DEFAULT_ENDPOINT)
    try:
        if args.command == "build":
            return _build(client, args)
        return _cleanup(client, args.older_than)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _build(client: Client, args: argparse.Namespace) -> int:
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
        ssh_port=args.ssh_port,
        target_device=args.target_device,
    )
    result = build_image(client, request, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(asdict(result), sort_keys=True))
    return 0


def _cleanup(client: Client, older_than: float) -> int:
    """Delete builder servers and keys (by label) left behind by interrupted builds."""
    cutoff = datetime.now(UTC) - timedelta(minutes=older_than)
    removed: list[str] = []
    for server in client.servers.get_all(label_selector=BUILDER_LABEL):
        if server.created is None or server.created <= cutoff:
            server.delete()
            removed.append(f"server {server.id} ({server.name})")
    for key in client.ssh_keys.get_all(label_selector=BUILDER_LABEL):
        if key.created is None or key.created <= cutoff:
            key.delete()
            removed.append(f"ssh key {key.id} ({key.name})")
    print(json.dumps({"removed": removed}))
    return 0


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
    build.add_argument("--ssh-port", type=int, default=22, help="test knob: rescue SSH port")
    build.add_argument("--target-device", default="/dev/sda", help="test knob: disk to write")
    cleanup = commands.add_parser("cleanup", help="delete leaked builder servers and keys")
    cleanup.add_argument(
        "--older-than", type=float, default=0, help="only builders older than MINUTES"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
