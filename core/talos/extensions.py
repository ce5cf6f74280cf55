"""Kernel modules that exist on a Talos node only with an Image Factory system extension.

A worker config that loads such a module (``machine.kernel.modules``) on an image without the
extension boots, but Talos retries the load forever and the workloads that need the module
(DRBD/LINSTOR, ZFS: what Cozystack's worker template loads) cannot run on the node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Official extension -> the modules it ships, from the extensions' sources:
#: ``siderolabs/extensions`` ``storage/drbd`` copies the drbd package's ``/lib/modules``, which
#: LINBIT's ``drbd/Kbuild.drbd`` builds as ``drbd``, ``drbd_transport_tcp``,
#: ``drbd_transport_lb-tcp`` and ``drbd_transport_rdma``; ``storage/zfs`` ships OpenZFS's
#: ``spl`` and ``zfs`` (one module since OpenZFS 2.2).
EXTENSION_MODULES: dict[str, tuple[str, ...]] = {
    "siderolabs/drbd": (
        "drbd",
        "drbd_transport_tcp",
        "drbd_transport_lb-tcp",
        "drbd_transport_rdma",
    ),
    "siderolabs/zfs": ("spl", "zfs"),
}


def _module_key(name: str) -> str:
    """modprobe treats ``-`` and ``_`` in module names alike."""
    return name.replace("-", "_")


_PROVIDED_BY = {
    _module_key(module): extension
    for extension, modules in EXTENSION_MODULES.items()
    for module in modules
}


def loaded_modules(documents: Iterable[dict[str, Any]]) -> list[str]:
    """The names in ``machine.kernel.modules`` of the v1alpha1 document."""
    names: list[str] = []
    for document in documents:
        if "kind" in document:
            continue
        machine = document.get("machine")
        kernel = machine.get("kernel") if isinstance(machine, dict) else None
        modules = kernel.get("modules") if isinstance(kernel, dict) else None
        for module in modules if isinstance(modules, list) else []:
            if isinstance(module, dict) and isinstance(module.get("name"), str):
                names.append(module["name"])
    return names


def needed_extensions(documents: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Module -> the extension it needs, for every extension module the config loads."""
    return {
        module: _PROVIDED_BY[_module_key(module)]
        for module in loaded_modules(documents)
        if _module_key(module) in _PROVIDED_BY
    }
