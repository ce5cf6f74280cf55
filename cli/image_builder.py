"""CLI for building Talos snapshots without Pulumi, and for cleaning up after a failure.

    python -m components.image_builder build --talos-version v1.11.6 --arch amd64 \\
        --location fsn1 [--location nbg1 ...] [--server-type cx23 --server-type cpx22 ...] \\
        (--schematic-id ID | --extension siderolabs/qemu-guest-agent ...)
    python -m components.image_builder cleanup [--older-than MINUTES | --all] [--dry-run]

The token comes from HCLOUD_TOKEN and the API endpoint from HCLOUD_ENDPOINT. The
result is one JSON object on stdout; progress goes to stderr. SIGTERM stops a
build like Ctrl-C: its server, key and unfinished snapshot are deleted first.
Exit codes: 0 done,
2 bad input (arguments, a token the API refuses), 1 a runtime failure (API or
Image Factory unreachable or answering nonsense, a failed build step), whose
traceback only ``--debug`` shows.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
import urllib.error
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from types import FrameType
from typing import TypeVar

import requests
from hcloud import APIException

from core import validators
from core.config import (
    DEFAULT_BUILDER_SERVER_TYPES,
    DEFAULT_EXTENSIONS,
    WRITE_TIMEOUT_MINUTES,
    check_write_timeout,
)
from core.config.model import (
    DEFAULT_FACTORY_URL,
    HTTP_URL,
    builder_server_type_problems,
    check_factory_url,
    check_location,
    check_own_snapshot_labels,
    check_preferences,
    check_schematic_id,
    check_talos_version,
)
from core.errors import EXIT_BAD_INPUT, EXIT_RUNTIME_FAILURE
from core.hetzner.access import DEFAULT_ENDPOINT, api_endpoint, environment_token
from core.hetzner.api import ApiClient
from core.image_builder.builder_resources import STALE_AFTER, find_stale, remove_stale
from core.image_builder.pipeline import BuildError, BuildRequest, Limits, build_image
from core.image_builder.schematic import register_schematic
from core.waits import Interrupted

Value = TypeVar("Value")

#: Time for cleanup to wait while a leftover is locked by a running action.
CLEANUP_SECONDS = 600.0


class BadArguments(ValueError):
    """Arguments or environment the build cannot start with; every problem is listed."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = environment_token()
    endpoint = api_endpoint()
    try:
        problems = [] if token else ["HCLOUD_TOKEN is not set (a Hetzner Cloud API token)"]
        if not HTTP_URL.match(endpoint):
            problems.append(
                f"HCLOUD_ENDPOINT {endpoint!r} is not an http(s) URL like {DEFAULT_ENDPOINT}"
            )
        if args.command == "build":
            problems += _build_argument_problems(args)
        if problems:
            raise BadArguments("\n".join(f"  - {problem}" for problem in problems))
        signal.signal(signal.SIGTERM, _interrupt)
        client = ApiClient(str(token), endpoint)
        if args.command == "build":
            return _build(client, args)
        older_than = timedelta(0) if args.all else timedelta(minutes=args.older_than)
        if args.dry_run:
            return _cleanup_dry_run(client, older_than)
        return _cleanup(client, older_than)
    except BadArguments as error:
        print(f"error: bad input:\n{error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        code, message = _failure(error, endpoint, getattr(args, "factory_url", ""))
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug or code == EXIT_BAD_INPUT else " (--debug shows the traceback)"
        print(f"error: {message}{hint}", file=sys.stderr)
        return code


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _build_argument_problems(args: argparse.Namespace) -> list[str]:
    """The build's arguments, checked by the stack config's own rules (``core.config.model``);
    ``args`` gets the values as the config would hold them (e.g. a lower-case location)."""
    problems: list[str] = []

    def checked(flag: str, check: Callable[[Value], Value], value: Value) -> Value:
        try:
            return check(value)
        except ValueError as error:
            problems.append(f"{flag}: {error}")
            return value

    checked("--talos-version", check_talos_version, args.talos_version)
    args.location = [checked("--location", check_location, where) for where in args.location]
    checked("--location", check_preferences, args.location)
    if args.server_type:
        checked("--server-type", check_preferences, args.server_type)
        args.server_type = [name.lower() for name in args.server_type]
        wrong = builder_server_type_problems(args.arch, tuple(args.server_type), catalogue=None)
        problems += [f"--server-type: {problem}" for problem in wrong]
    if args.schematic_id is not None:
        checked("--schematic-id", check_schematic_id, args.schematic_id)
    args.factory_url = checked("--factory-url", check_factory_url, args.factory_url)
    labels: dict[str, str] = {}
    for label in args.label:
        key, equals, value = label.partition("=")
        if not equals:
            problems.append(f"--label: {label!r} is not key=value (e.g. --label team=platform)")
        else:
            labels[key] = value
    checked("--label", check_own_snapshot_labels, labels)
    problems += [f"--label: {problem}" for problem in validators.hetzner_label_problems(labels)]
    args.labels = labels
    return problems


def _failure(error: Exception, endpoint: str, factory_url: str) -> tuple[int, str]:
    """Exit code and message of a failure: a refused token is bad input, the rest runtime."""
    if isinstance(error, BuildError):
        cause = error.__cause__
        if isinstance(cause, ValueError):  # the pipeline's checks of its request
            return EXIT_BAD_INPUT, str(error)
        code, detail = (
            _failure(cause, endpoint, factory_url)
            if isinstance(cause, Exception)
            else (EXIT_RUNTIME_FAILURE, error.detail)
        )
        return code, str(BuildError(error.step, detail, error.leaked))
    if isinstance(error, APIException):
        if error.code in {"unauthorized", "forbidden", 401, 403}:
            return EXIT_BAD_INPUT, (
                f"the Hetzner API at {endpoint} refused HCLOUD_TOKEN ({error.code}): set a valid "
                "read/write API token of the project"
            )
        return EXIT_RUNTIME_FAILURE, (
            f"the Hetzner API at {endpoint} answered {error.code}: {str(error.message)[:200]} "
            "(is HCLOUD_ENDPOINT the Hetzner Cloud API?)"
        )
    if isinstance(error, requests.RequestException):
        reason = "no answer in time" if isinstance(error, requests.Timeout) else "connection failed"
        return EXIT_RUNTIME_FAILURE, (
            f"cannot reach the Hetzner API at {endpoint} ({reason}); check HCLOUD_ENDPOINT and "
            "the network"
        )
    if isinstance(error, urllib.error.HTTPError):
        return EXIT_RUNTIME_FAILURE, (
            f"the Image Factory at {factory_url} answered HTTP {error.code} {error.reason}"
        )
    if isinstance(error, urllib.error.URLError | TimeoutError | ConnectionError):
        why = error.reason if isinstance(error, urllib.error.URLError) else error
        return EXIT_RUNTIME_FAILURE, (
            f"cannot reach the Image Factory at {factory_url} ({why}); check --factory-url "
            "and the network"
        )
    if isinstance(error, json.JSONDecodeError | KeyError):
        return EXIT_RUNTIME_FAILURE, (
            f"the Image Factory at {factory_url} did not answer with a schematic id"
        )
    detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return EXIT_RUNTIME_FAILURE, detail


def _build(client: ApiClient, args: argparse.Namespace) -> int:
    schematic_id = args.schematic_id or register_schematic(
        args.factory_url, args.extension or list(DEFAULT_EXTENSIONS)
    )
    request = BuildRequest(
        talos_version=args.talos_version,
        schematic_id=schematic_id,
        architecture=args.arch,
        location=args.location[0],
        fallback_locations=tuple(args.location[1:]),
        server_type=(args.server_type or [DEFAULT_BUILDER_SERVER_TYPES[args.arch]])[0],
        fallback_server_types=tuple((args.server_type or [])[1:]),
        factory_url=args.factory_url,
        extra_labels=args.labels,
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
        return EXIT_RUNTIME_FAILURE
    return 0


def _cleanup_dry_run(client: ApiClient, older_than: timedelta) -> int:
    """What ``cleanup`` would delete, with each one's labels' scope and age; deletes nothing."""
    stale = find_stale(client, scope=None, older_than=older_than)
    for item in stale:
        print(f"would delete {item} (created {item.created})", file=sys.stderr)
    print(json.dumps({"would_remove": [str(item) for item in stale]}))
    return 0


def _write_timeout(text: str) -> int:
    try:
        return check_write_timeout(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.image_builder")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of a runtime failure"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build one Talos snapshot")
    build.add_argument("--talos-version", required=True, help="e.g. v1.11.6")
    source = build.add_mutually_exclusive_group()
    source.add_argument("--schematic-id", help="Image Factory schematic id (64 hex)")
    source.add_argument("--extension", action="append", help="official extension (repeatable)")
    build.add_argument("--arch", choices=["amd64", "arm64"], required=True)
    build.add_argument(
        "--location",
        action="append",
        required=True,
        help="e.g. fsn1; repeat for locations to try in order when one has no capacity",
    )
    build.add_argument(
        "--server-type",
        action="append",
        help=(
            f"builder type (default {' / '.join(DEFAULT_BUILDER_SERVER_TYPES.values())}); "
            "repeat for types to try in order"
        ),
    )
    build.add_argument("--factory-url", default=DEFAULT_FACTORY_URL)
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
    cleanup.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted; delete nothing"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
