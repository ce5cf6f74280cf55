"""Offline render: what a stack will create, from ``Pulumi.<stack>.yaml`` alone.

No Pulumi CLI, no credentials, no network: the stack file is validated with the
same model the program uses, and the plan is described from the same pure
builders the components call. Encrypted values are shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from components.config import Encrypted, Secret, StackConfig, load_stack_file, parse_stack_config
from components.network import PrivateNetworkArgs


@dataclass
class Rendered:
    """The text report and the files written next to it."""

    report: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def line(self, text: str = "") -> None:
        self.report.append(text)


def render_stack(project_dir: Path, stack_name: str, *, show_secrets: bool = False) -> Rendered:
    """Validate the stack file and describe everything the stack will create.

    Raises ConfigError (every problem at once) on an invalid stack.
    """
    sections, token = load_stack_file(project_dir, stack_name)
    stack = parse_stack_config(sections, token, project_dir, require_token=False)
    rendered = Rendered()
    rendered.line(f"stack {stack_name}: configuration is valid (nothing was contacted)")
    _token_notes(stack, rendered)
    _network(stack, rendered)
    return rendered


def secret_label(value: Secret | Encrypted | None, *, show_secrets: bool) -> str:
    """How a secret is shown: never its value unless asked for."""
    if value is None:
        return "not set"
    if isinstance(value, Encrypted):
        return "[encrypted in the stack file]"
    return value.reveal() if show_secrets else "[secret]"


def _token_notes(stack: StackConfig, rendered: Rendered) -> None:
    if stack.hcloud_token is None:
        rendered.warnings.append(
            "hcloud:token is not set in the stack file: set it with "
            "`pulumi config set --secret hcloud:token` (or export HCLOUD_TOKEN) before "
            "`pulumi up`"
        )


def _network(stack: StackConfig, rendered: Rendered) -> None:
    args = PrivateNetworkArgs.from_stack(stack)
    rendered.line()
    rendered.line('PrivateNetwork "network"')
    if args.existing is None:
        rendered.line(
            f"  hcloud.Network        network-network         name={args.name} "
            f"ipRange={args.ip_range}"
        )
        rendered.line(
            f"  hcloud.NetworkSubnet  network-subnet          type=cloud "
            f"zone={args.network_zone} ipRange={args.subnet}"
        )
    else:
        rendered.line(
            f"  (lookup)              existing network {args.existing!r}, subnet {args.subnet} "
            f"in zone {args.network_zone}"
        )
    if args.vswitch_id is not None:
        rendered.line(
            f"  hcloud.NetworkSubnet  network-vswitch-subnet  type=vswitch "
            f"vswitchId={args.vswitch_id} ipRange={args.vswitch_subnet}"
        )
