"""What the program's two dynamic providers share: the stack config the engine hands them,
and the way they tell the user what they do.

A dynamic provider runs in its own process; refresh and destroy give it only the state,
whose token and endpoint may be older than the stack's, so both providers keep the stack
config from ``configure`` and reach Hetzner with the stack's current access
(``core.hetzner.access``).
"""

from __future__ import annotations

import sys
import threading

from pulumi.dynamic import ConfigureRequest, ResourceProvider

from core.hetzner.access import ProviderConfig


class ConfiguredProvider(ResourceProvider):
    """A ``ResourceProvider`` that keeps the stack config (``hcloud:token``, ...)."""

    #: None until the engine configures the provider (and in tests that call it directly).
    stack_config: ProviderConfig | None = None

    def configure(self, req: ConfigureRequest) -> None:
        self.stack_config = req.config


_STDERR = threading.Lock()


def log_line(line: str) -> None:
    """One line on stderr, which the engine shows the user while the resource is worked on.

    The engine runs the snapshot builds of several architectures (and the sweeps of several
    pools) in threads of one provider process; ``print`` writes a line and its newline
    separately, so two threads' lines could run together: one locked write per line.
    """
    with _STDERR:
        sys.stderr.write(f"{line}\n")
        sys.stderr.flush()
