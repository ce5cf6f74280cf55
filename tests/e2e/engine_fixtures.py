"""Fixtures of the end-to-end suite (a plugin of tests/conftest.py): the engine's real pieces from the toolchain cache.

Collected only with ``--e2e`` (``make e2e``). A missing tool fails with the command that
builds it; nothing here is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED_REFERENCE, load_toolchain
from tests.e2e.kube_cluster import KubeCluster
from tests.stand_ins.kubelet import KubeletStandIn

#: The real pieces every e2e test needs: CLI, Python language host and dynamic-provider
#: shim, the Kubernetes and hcloud providers, control plane.
REQUIRED = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-pulumi-python",
    "pulumi-language-python-exec",
    "pulumi-resource-kubernetes",
    "pulumi-resource-hcloud",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
)
PASSPHRASE = "e2e-passphrase"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def e2e_tools() -> dict[str, Path]:
    toolchain = load_toolchain()
    found: dict[str, Path] = toolchain.locate("e2e")
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        pytest.fail(f"e2e tools missing ({', '.join(missing)}): {toolchain.build_hint('e2e')}")
    return found


@pytest.fixture(scope="session")
def kube(
    e2e_tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    """etcd + kube-apiserver + kube-controller-manager, with Cozystack's CRDs installed."""
    cluster = KubeCluster(e2e_tools, tmp_path_factory.mktemp("kube"))
    try:
        cluster.start()
        crds = sorted((SHARED_REFERENCE / "cozystack-crds").glob("cozystack.io_*.yaml"))
        if not crds:
            pytest.fail(f"test oracle missing: Cozystack CRDs in {SHARED_REFERENCE}")
        cluster.apply_crds(crds)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kubelet(kube: KubeCluster) -> Iterator[KubeletStandIn]:
    """One Ready node on which every pod is reported running (see tests/stand_ins/kubelet.py),
    but those of the namespaces in its ``elsewhere``."""
    stand_in = KubeletStandIn(kube).start()
    yield stand_in
    stand_in.stop()


@dataclass(frozen=True)
class PulumiEnv:
    """A private PULUMI_HOME and file backend; plugins only from the toolchain cache."""

    home: Path
    backend: str
    pulumi_root: Path
    env: dict[str, str]
    #: PATH of the CLI as a user has it: the CLI, its language host and the dynamic-provider
    #: shim; no provider binary (those come from PULUMI_HOME), no Python virtualenv.
    user_path: str

    def cli(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.pulumi_root / "bin" / "pulumi"), *args],
            env={**os.environ, **self.env, **(env or {})},
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


#: What the Pulumi CLI's own distribution holds in one directory: the CLI, the Python
#: language host and the scripts it runs beside itself (it looks for its executor there).
CLI_DISTRIBUTION = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-language-python-exec",
    "pulumi-resource-pulumi-python",
)


@pytest.fixture(scope="session")
def pulumi_install(e2e_tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI installed as a user has it: ``<root>/bin`` with the files of its distribution
    (hard links into the toolchain cache where the filesystem allows, copies otherwise)."""
    root = tmp_path_factory.mktemp("pulumi-install")
    (root / "bin").mkdir()
    for name in CLI_DISTRIBUTION:
        target = root / "bin" / name
        try:
            os.link(e2e_tools[name], target)
        except OSError:
            shutil.copy2(e2e_tools[name], target)
    return root


@pytest.fixture
def pulumi_env(pulumi_install: Path, e2e_tools: dict[str, Path], tmp_path: Path) -> PulumiEnv:
    home = tmp_path / "pulumi-home"
    state = tmp_path / "state"
    state.mkdir()
    # Providers come from the plugin directory only (installed below), never from PATH.
    bins = [str(pulumi_install / "bin")]
    tests_venv = str(Path(sys.executable).parent)
    user_path = os.pathsep.join(
        [*bins, *(p for p in os.environ["PATH"].split(os.pathsep) if p != tests_venv)]
    )
    env = {
        "PULUMI_HOME": str(home),
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PYTHONPATH": str(Path(__file__).parents[2]),  # tests.e2e.throwaway_provider
        "PATH": os.pathsep.join([*bins, str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    pulumi_env = PulumiEnv(home, f"file://{state}", pulumi_install, env, user_path)
    versions: dict[str, str] = load_toolchain().plugin_versions("e2e")
    for binary, version in versions.items():
        if binary not in e2e_tools:
            continue
        name = binary.removeprefix("pulumi-resource-")
        result = pulumi_env.cli(
            "plugin", "install", "resource", name, version, "--file", str(e2e_tools[binary])
        )
        assert result.returncode == 0, result.stderr
    return pulumi_env
