"""`make setup` installs exactly the missing Debian tools (decision tested without apt)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "system_deps.py"
EVERYTHING = "sshd,xz,curl,npm,venv"


def dry_run(present: str, user: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--dry-run",
            f"--assume-present={present}",
            f"--assume-user={user}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def test_everything_present_installs_nothing_and_skips_apt_update() -> None:
    out = dry_run(EVERYTHING, "root")
    assert "packages: (none)" in out
    assert "apt-get" not in out


def test_no_sshd_with_npm_present_installs_only_openssh_server() -> None:
    out = dry_run("xz,curl,npm,venv", "root")
    assert "packages: openssh-server\n" in out
    assert "would run: apt-get update -qq" in out
    assert "would run: apt-get install -y -qq --no-install-recommends openssh-server\n" in out


def test_the_machines_own_node_counts_as_npm() -> None:
    """Debian's npm conflicts with a Node.js that ships npm: never ask for it then."""
    out = dry_run("sshd,xz,curl,node,venv", "root")
    assert "packages: (none)" in out


def test_no_node_and_no_npm_installs_npm() -> None:
    out = dry_run("sshd,xz,curl,venv", "root")
    assert "packages: npm\n" in out


def test_a_sudo_user_installs_through_non_interactive_sudo() -> None:
    out = dry_run("xz,curl,npm,venv", "sudo")
    assert "would run: sudo -n apt-get update -qq" in out
    assert "would run: sudo -n apt-get install -y -qq --no-install-recommends openssh-server" in out


def test_not_root_and_no_sudo_says_what_to_install() -> None:
    out = dry_run("curl,npm,venv", "none")
    assert "packages: openssh-server xz-utils\n" in out
    assert "would fail: not root and no sudo" in out
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--assume-present=curl,npm,venv", "--assume-user=none"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert "apt-get install -y openssh-server xz-utils" in result.stderr
    assert "not root and has no sudo" in result.stderr


@pytest.mark.parametrize("tool", ["sshd", "xz", "curl", "npm", "venv"])
def test_each_tool_has_its_own_package(tool: str) -> None:
    present = ",".join(name for name in EVERYTHING.split(",") if name != tool)
    packages = dry_run(present, "root").split("packages: ")[1].split("\n")[0].split()
    assert len(packages) == 1
