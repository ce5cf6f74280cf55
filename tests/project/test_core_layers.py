"""The shape of ``core``: imports run one way, and the in-cluster scripts stay apart.

Read from the source (every import, ``TYPE_CHECKING`` ones too), as the import drawing is:
no module imports itself through others, no two packages of ``core`` import each other
through any chain, nothing imports an in-cluster script, and what a helper's ConfigMap
ships, at the paths its volume gives the files, is exactly its script and what the script
imports of the project, each file as the repository has it at that path.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.autoscaler.manifests import (
    CONTROLLER_COMMAND,
    SETTER_COMMAND,
    node_controller_manifests,
    provider_id_setter_manifests,
)

from tests.conftest import REPO
from tests.support.manifest_paths import pod_spec
from tests.support.pod_volume import projected

#: The scripts the Deployments run (``python ... -m core.kubernetes.<script>``).
SCRIPTS = {command[-1].rpartition(".")[2] for command in (SETTER_COMMAND, CONTROLLER_COMMAND)}
KUBERNETES = "core.kubernetes"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` names in an import (``from a import b`` names ``a`` and ``a.b``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def core_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``core`` it imports (a package's own ``__init__`` left out)."""
    paths = {module_name(path): path for path in (REPO / "core").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        for imported in imported_names(path):
            while imported and imported not in paths:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(f"{imported}."):
                targets.add(imported)
        graph[name] = targets
    return graph


def circles(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Groups of nodes that reach each other (strongly connected, more than one node)."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        reach[start] = seen
    groups: list[set[str]] = []
    for node in graph:
        group = {node} | {other for other in reach[node] if node in reach.get(other, set())}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups


def package_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between the units of ``core``: ``core.talos``, ``core.plan``, ..."""

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(unit(module), set()).update(
            unit(target) for target in targets if unit(target) != unit(module)
        )
    return units


def test_the_circle_finder_finds_a_circle() -> None:
    """The checks below can fail."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_core_imports_itself_through_others() -> None:
    graph = core_graph()
    assert "core.talos.worker_config" in graph and "core.config.rules" in graph
    assert circles(graph) == []


def test_no_two_packages_of_core_import_each_other() -> None:
    units = package_graph(core_graph())
    assert {"core.config", "core.talos", "core.hetzner", "core.kubernetes"} <= set(units)
    assert circles(units) == []


def test_nothing_but_an_in_cluster_script_imports_one() -> None:
    assert {"provider_id_setter", "node_controller"} == SCRIPTS
    scripts = {f"{KUBERNETES}.{script}" for script in SCRIPTS}
    importers = [
        path.relative_to(REPO).as_posix()
        for folder in ("core", "cli", "components")
        for path in (REPO / folder).rglob("*.py")
        if module_name(path) not in scripts
        if any(name in scripts for name in imported_names(path))
    ]
    assert importers == []


def test_the_config_maps_ship_what_their_scripts_import_and_nothing_of_the_project() -> None:
    helpers = (
        provider_id_setter_manifests("ns", "creds", "token"),
        node_controller_manifests("ns", "creds", "token", "{}"),
    )
    for config_map, *_, deployment in helpers:
        pod = pod_spec(deployment)
        (volume,) = pod["volumes"]
        files = projected(config_map["data"], volume["configMap"])
        shipped = {module_name(REPO / path): path for path in files if path.endswith(".py")}
        (container,) = pod["containers"]
        assert container["command"][-2] == "-m"
        script = container["command"][-1]
        # The script and, through it, every module of the project it reaches: all shipped,
        # nothing else; the packages above them are namespace packages in the pod.
        needed, todo = set(), [script]
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                assert name in shipped, (script, name)
                path = REPO / shipped[name]
                assert path.read_text(encoding="utf-8") == files[shipped[name]]
                for imported in imported_names(path):
                    top = imported.split(".")[0]
                    if imported in shipped:
                        todo.append(imported)
                    else:
                        assert top in sys.stdlib_module_names or (
                            imported.rpartition(".")[0] in shipped  # a name imported from one
                        ), (name, imported)
        assert needed == set(shipped)
        assert "core" not in sys.stdlib_module_names
