"""The project's own program through the real Pulumi engine, as a user runs it (issues 15, 21).

Two stacks derived from the shipped ones — ``e2e-dev`` from ``Pulumi.dev.yaml`` (Cozystack
``Package``) and ``e2e-prod`` from ``Pulumi.prod.yaml`` (Helm chart, x86 + ARM) — in a copy of
the project, driven only by ``pulumi`` commands as the README's "From nothing to autoscaling
nodes" gives them: ``login file://``, ``stack init``, ``config set --secret hcloud:token``
(the token on stdin, as pasted), ``preview``, ``up --yes``, ``preview --expect-no-changes``,
``refresh --expect-no-changes``, a new ``talos.version`` through the commands the PR workflows
run (``preview.yml``, ``deploy.yml``: what ``pulumi/actions`` runs), ``stack output --json``
against the output contract, the ``examples/consumer`` program reading the outputs through a
``StackReference``, ``destroy --yes`` with autoscaled servers and Nodes in the way, ``stack
rm``. The dev stack also runs the providerID setter's script against the real API server and,
chained to the ``talos.version`` change, the node controller's replacement of the autoscaled
nodes that booted the old generation, under a PodDisruptionBudget.

What is real: the Pulumi CLI and engine v3.274.1, the Python language host (v3.259.0: it
creates the project's ``.venv`` from ``requirements.txt`` as ``Pulumi.yaml`` says and runs
``__main__.py``), Pulumi's dynamic-provider host started from that virtualenv (the Talos
snapshot build and the destroy sweep, the build over SSH into a real OpenSSH server), the
hcloud provider 1.43.3 and the Kubernetes provider (built from v4.25.0), etcd, kube-apiserver
and kube-controller-manager 1.35.4. What stands in (docs/development.md, "End-to-end tests"):
the Hetzner Cloud API and the Image Factory (the emulators of the unit tests), a chart
repository on loopback, and a kubelet stand-in that reports pods running (no containers run
here).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.autoscaler.manifests import (
    CLUSTER_ROLE,
    CONTROLLER_CONFIG_FILE,
    CONTROLLER_NAME,
    SETTER_NAME,
)
from core.autoscaler.values import (
    CREDENTIALS_SECRET,
    DEPLOYMENT_NAME,
    PACKAGE_NAME,
    TALOS_CONFIG_SECRET,
    decode_cluster_config,
    expander_priorities,
)
from core.config.parse import read_stack_file
from core.hetzner.facts import NODE_GROUP_LABEL
from core.image_builder.pipeline import Step
from core.image_builder.sharing import is_sharing_label
from core.kubernetes.rollout import GENERATION_LABEL
from core.plan import StackPlan, plan_stack

from tests.e2e.engine_fixtures import PulumiEnv
from tests.e2e.helper_pod import helper_pod
from tests.e2e.kube_cluster import KubeCluster, call, eventually, free_port
from tests.e2e.workload import (
    Background,
    Sample,
    Watcher,
    deployment,
    disruptions_allowed,
    pdb,
    ready_nodes,
)
from tests.stand_ins.chart_repository import ChartRepository
from tests.stand_ins.hetzner_api import HetznerEmulator
from tests.stand_ins.image_factory import RAW_IMAGE, ImageFactory
from tests.stand_ins.kubelet import NODE as KUBELET_NODE
from tests.stand_ins.kubelet import KubeletStandIn, PoolStandIn, register_node
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn
from tests.stand_ins.rescue_sshd import RescueSystem
from tests.support.program import OUTPUT_CONTRACT

REPO = Path(__file__).resolve().parents[2]
PROJECT = "hcloud-talos-autoscaler"
#: The hcloud provider accepts only 64-character tokens.
TOKEN = "e2e0" * 16
#: What a checkout holds that the program reads (a user runs `pulumi` in it).
PROJECT_FILES = ("__main__.py", "Pulumi.yaml", "requirements.txt")
PROJECT_DIRS = ("components", "core", "examples")
#: pip installing requirements.txt into a new virtualenv, on a busy machine.
OPERATION_TIMEOUT = 900
#: Secret values of the sample worker config (examples/worker.yaml): never in the state.
WORKER_SECRETS = (
    "7x1m9q.0sample0token00",
    "3f9k2p.0sample0cluster0",
    "c2FtcGxlLWNsdXN0ZXItc2VjcmV0LW5vdC1yZWFsLTAwMDA=",
)
NEXT_TALOS_VERSION = "v1.11.5"
MERGE_PATCH = "application/merge-patch+json"


@dataclass
class StandIns:
    hetzner: HetznerEmulator
    factory: ImageFactory
    rescue: RescueSystem
    charts: ChartRepository


@pytest.fixture
def stand_ins(rescue: RescueSystem, factory: ImageFactory) -> Iterator[StandIns]:
    with (
        HetznerEmulator(rescue.authorized_keys, token=TOKEN) as hetzner,
        ChartRepository() as charts,
    ):
        yield StandIns(hetzner, factory, rescue, charts)


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project as a user has it after cloning: no ``.venv`` yet (the language
    host makes it, as ``Pulumi.yaml`` says). Both stacks live in it, as a user's do."""
    checkout = tmp_path_factory.mktemp("checkout")
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, checkout / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    return checkout


def urn_parts(urn: str) -> tuple[str, str]:
    """(type, name) of a URN."""
    _, _, qualified, name = urn.split("::", 3)
    return qualified.rsplit("$", 1)[-1], name


@dataclass
class Run:
    """One ``pulumi`` operation: what the user saw, and the engine's steps by URN (from the
    ``--event-log`` the CLI writes, the same events the Automation API reads)."""

    stdout: str
    steps: dict[str, list[str]]
    events: list[dict[str, Any]]


@dataclass
class ProgramStack:
    """One stack of this project, in a checkout, driven only by ``pulumi`` commands."""

    env: PulumiEnv
    kube: KubeCluster
    stand_ins: StandIns
    checkout: Path
    name: str
    user_env: dict[str, str]
    logs: Path
    #: `pulumi login` target (README step 1).
    backend: str = ""
    #: Destroyed and removed (the test got to its end).
    removed: bool = False
    initialized: bool = False
    #: When the last `pulumi` operation returned (time.monotonic()).
    finished: float = 0.0

    @classmethod
    def derived(
        cls,
        env: PulumiEnv,
        kube: KubeCluster,
        stand_ins: StandIns,
        checkout: Path,
        tmp_path: Path,
        source: str,
        changes: dict[str, Any],
    ) -> ProgramStack:
        """``Pulumi.e2e-<source>.yaml``: the shipped stack with ``changes`` merged into its
        sections (only what points it at the stand-ins)."""
        config = yaml.safe_load((REPO / f"Pulumi.{source}.yaml").read_text())["config"]
        for key, value in changes.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) else value
        name = f"e2e-{source}"
        (checkout / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
        # The user's shell: PULUMI_CONFIG_PASSPHRASE exported, the backend from `pulumi
        # login`, the CLI on PATH; nothing of the tests' own virtualenv.
        user_env = {
            key: value
            for key, value in {**os.environ, **env.env}.items()
            if key not in ("PYTHONPATH", "PULUMI_PYTHON_CMD", "PULUMI_BACKEND_URL", "VIRTUAL_ENV")
        }
        user_env |= {
            "PATH": env.user_path,
            "KUBECONFIG": str(kube.kubeconfig),
            # The build's test-only knobs (docs/image-build.md): the rescue sshd and its "disk".
            "HCLOUD_TALOS_TEST_SSH_PORT": str(stand_ins.rescue.port),
            "HCLOUD_TALOS_TEST_TARGET_DEVICE": str(stand_ins.rescue.disk),
        }
        logs = tmp_path / "pulumi-logs"
        logs.mkdir(exist_ok=True)
        return cls(env, kube, stand_ins, checkout, name, user_env, logs)

    @property
    def plan(self) -> StackPlan:
        """What ``render`` plans for this stack (from its file, offline)."""
        config, _ = read_stack_file(self.checkout, self.name)
        return plan_stack(config)

    @property
    def hetzner(self) -> HetznerEmulator:
        return self.stand_ins.hetzner

    def pulumi(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``pulumi ARGS`` in the checkout (or ``cwd``), as the user's shell runs it; it must
        succeed."""
        result = subprocess.run(
            [str(self.env.pulumi_root / "bin" / "pulumi"), *args],
            env={**self.user_env, **(env or {})},
            cwd=cwd or self.checkout,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=OPERATION_TIMEOUT,
        )
        assert result.returncode == 0, (
            f"pulumi {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        return result

    def init(self) -> None:
        """README step 1: `mkdir -p` the state directory, `pulumi login file://…`, `pulumi
        stack init`, `pulumi config set --secret hcloud:token` (the token pasted on stdin)."""
        state = Path(self.env.backend.removeprefix("file://")) / "backend"
        with pytest.raises(AssertionError) as refused:
            self.pulumi("login", f"file://{state}")
        assert "no such file or directory" in str(refused.value)
        state.mkdir(parents=True)
        self.backend = f"file://{state}"
        self.pulumi("login", self.backend)
        self.pulumi("stack", "init", self.name)
        self.initialized = True
        self.pulumi("config", "set", "--secret", "hcloud:token", stdin=TOKEN + "\n")

    def run(self, *command: str, env: dict[str, str] | None = None) -> Run:
        """A `pulumi` operation with its event log: the flag the Automation API uses too,
        offered only with PULUMI_DEBUG_COMMANDS set (cmd/pulumi/operations, v3.274.1)."""
        log = self.logs / f"{len(list(self.logs.iterdir())):02d}-{command[0]}.jsonl"
        observed = {**(env or {}), "PULUMI_DEBUG_COMMANDS": "true"}
        result = self.pulumi(*command, "--event-log", str(log), env=observed)
        self.finished = time.monotonic()
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        steps: dict[str, list[str]] = {}
        for event in events:
            pre = event.get("resourcePreEvent")
            if pre is not None:
                steps.setdefault(pre["metadata"]["urn"], []).append(pre["metadata"]["op"])
        return Run(result.stdout, steps, events)

    def outputs(self) -> dict[str, Any]:
        """`pulumi stack output --json`."""
        outputs: dict[str, Any] = json.loads(self.pulumi("stack", "output", "--json").stdout)
        return outputs

    def state_text(self) -> str:
        """Every checkpoint the file backend wrote (current, backups, history), as stored."""
        state = Path(self.backend.removeprefix("file://")) / ".pulumi"
        files = sorted(path for path in state.rglob("*.json") if self.name in path.name)
        assert files, f"no checkpoint of {self.name} in {state}"
        return "\n".join(path.read_text() for path in files)

    def get(self, path: str) -> Any:
        return self.kube.get(path)


# ---- the steps ------------------------------------------------------------------------------


def preview_shows_every_planned_create(program: ProgramStack) -> None:
    """`pulumi preview`: the first run, so the language host first makes the project's
    virtualenv from requirements.txt (Pulumi.yaml: toolchain pip, virtualenv .venv)."""
    preview = program.run("preview")
    venv_python = program.checkout / ".venv" / "bin" / "python"
    assert venv_python.exists(), "the language host made the virtualenv Pulumi.yaml names"
    resources = {
        urn_parts(urn): ops
        for urn, ops in preview.steps.items()
        if "pulumi:providers:" not in urn and "pulumi:pulumi:Stack" not in urn
    }
    assert all(ops == ["create"] for ops in resources.values()), resources
    # The engine registers exactly what render plans, under the same types and names.
    assert set(resources) == {(r.type, r.name) for r in program.plan.resources}
    assert program.hetzner.state.networks == {}  # a preview creates nothing
    assert program.hetzner.state.images == {}
    assert program.hetzner.state.servers == {}
    namespace = program.plan.secrets.namespace
    assert program.get(f"/api/v1/namespaces/{namespace}/secrets/{CREDENTIALS_SECRET}") is None


def up_creates_the_stack(program: ProgramStack) -> dict[str, Any]:
    up = program.run("up", "--yes")
    (program.logs / f"up-{program.name}.txt").write_text(up.stdout)
    build_progress_reaches_the_user(program, up)
    outputs = program.outputs()
    plan = program.plan
    hetzner = program.hetzner

    # The network and its subnet, in the emulator, through the real hcloud provider.
    (network,) = [n for n in hetzner.state.networks.values() if n["name"] == plan.network.name]
    assert outputs["networkId"] == str(network["id"])
    assert network["ip_range"] == plan.network.ip_range
    assert network["labels"] == plan.network.labels
    assert [(s["type"], s["ip_range"], s["network_zone"]) for s in network["subnets"]] == [
        ("cloud", plan.network.subnet, plan.network.network_zone)
    ]
    assert outputs["subnetIpRange"] == plan.network.subnet

    # One snapshot per architecture, really built: the image went through the rescue sshd
    # onto its disk, no builder server or key is left.
    snapshots = {image["labels"]["arch"]: image for image in hetzner.state.images.values()}
    assert {arch: str(image["id"]) for arch, image in snapshots.items()} == outputs["imageIds"]
    for snapshot in plan.image.snapshots:
        labels = snapshots[snapshot.architecture]["labels"]
        own = {key: value for key, value in labels.items() if not is_sharing_label(key)}
        assert own == snapshot.labels
    assert program.stand_ins.rescue.disk.read_bytes()[: len(RAW_IMAGE)] == RAW_IMAGE
    assert hetzner.builder_leftovers() == {"servers": [], "ssh_keys": [], "images": []}
    assert hetzner.state.servers == {} and hetzner.state.ssh_keys == {}

    # The Secrets hold the token and the cluster config with the new snapshots' ids.
    namespace = plan.secrets.namespace
    credentials = program.get(f"/api/v1/namespaces/{namespace}/secrets/{CREDENTIALS_SECRET}")
    assert base64.b64decode(credentials["data"]["token"]).decode() == TOKEN
    cluster_config = talos_cluster_config(program)
    assert cluster_config["imagesForArch"] == outputs["imageIds"]
    assert set(cluster_config["nodeConfigs"]) == set(plan.servers.pools)

    # Each spread pool's placement group, created through the engine and named by id.
    groups = {group["name"]: group for group in hetzner.state.placement_groups.values()}
    assert set(groups) == {group.name for group in plan.servers.placement_groups}
    for group in plan.servers.placement_groups:
        assert (groups[group.name]["type"], groups[group.name]["labels"]) == (
            "spread",
            group.labels,
        )
        node_config = cluster_config["nodeConfigs"][group.pool]
        assert node_config["placementGroup"] == str(groups[group.name]["id"])

    # The autoscaler: the Package, or the chart's Deployment (one --nodes flag per pool).
    if plan.autoscaler.deploy == "package":
        package = program.get(f"/apis/cozystack.io/v1alpha1/packages/{PACKAGE_NAME}")
        values = package["spec"]["components"]["cluster-autoscaler-hetzner"]["values"]
        groups = values["cluster-autoscaler"]["autoscalingGroups"]
        assert [group["name"] for group in groups] == list(plan.servers.pools)
    else:
        deployment = program.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT_NAME}"
        )
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        flags = [arg for arg in container["command"] if arg.startswith("--nodes=")]
        assert [flag.rsplit(":", 1)[1] for flag in flags] == list(plan.servers.pools)
        settings = plan.stack.autoscaler
        assert deployment["status"].get("availableReplicas") == settings.replicas
        budget = program.get(
            f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{DEPLOYMENT_NAME}"
        )
        assert budget is not None and budget["spec"]["maxUnavailable"] == 1
        if settings.expander == "priority":
            priorities = program.get(
                f"/api/v1/namespaces/{namespace}/configmaps/cluster-autoscaler-priority-expander"
            )
            assert priorities is not None
            assert yaml.safe_load(priorities["data"]["priorities"]) == {
                int(priority): pools for priority, pools in expander_priorities(plan.pools).items()
            }
    assert outputs["autoscalerLogsTarget"] == f"deployment/{DEPLOYMENT_NAME}"

    # The providerID setter, rolled out (the engine waited for its Deployment).
    setter = program.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{SETTER_NAME}")
    assert setter["status"].get("availableReplicas") == 1
    assert program.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{CLUSTER_ROLE}")
    return outputs


def talos_cluster_config(program: ProgramStack) -> dict[str, Any]:
    namespace = program.plan.secrets.namespace
    secret = program.get(f"/api/v1/namespaces/{namespace}/secrets/{TALOS_CONFIG_SECRET}")
    value = base64.b64decode(secret["data"]["cluster-config"]).decode()
    return decode_cluster_config(value, None)


def nothing_changes(program: ProgramStack) -> None:
    """A second preview and a refresh find the stack as `up` left it (both exit non-zero on
    any change)."""
    preview = program.run("preview", "--expect-no-changes")
    assert {op for ops in preview.steps.values() for op in ops} == {"same"}, preview.steps
    refresh = program.run("refresh", "--expect-no-changes", "--yes")
    assert {op for ops in refresh.steps.values() for op in ops} <= {"same", "refresh"}


def state_holds_no_plaintext_secret(program: ProgramStack) -> None:
    state = program.state_text()
    assert TOKEN not in state
    for value in WORKER_SECRETS:
        assert value not in state, f"{value} in the state"
    namespace = program.plan.secrets.namespace
    secret = program.get(f"/api/v1/namespaces/{namespace}/secrets/{TALOS_CONFIG_SECRET}")
    user_data = base64.b64decode(secret["data"]["cluster-config"]).decode()
    assert user_data not in state
    assert '"ciphertext"' in state
    stack_file = (program.checkout / f"Pulumi.{program.name}.yaml").read_text()
    assert TOKEN not in stack_file and "secure:" in stack_file


def build_progress_reaches_the_user(program: ProgramStack, up: Run) -> None:
    """What `pulumi up` shows while the snapshots build: each build's step lines, live, on
    the stack's row (the dynamic provider's stderr, which the engine forwards as info
    diagnostics without a resource), then again under "Diagnostics" at the end."""
    _, _, update = up.stdout.partition("\nUpdating (")  # after `up`'s own preview
    live, _, summary = update.partition("\nDiagnostics:\n")
    stack_row = re.compile(r"pulumi:pulumi:Stack \S+ creating \(\d+s\) \[([0-9a-f]{12})\] (.*)")
    shown: dict[str, list[str]] = {}
    for line in live.splitlines():
        match = stack_row.search(line)
        if match:
            shown.setdefault(match[1], []).append(match[2].strip())
    assert len(shown) == len(program.plan.image.snapshots), live  # one run id per build
    for lines in shown.values():
        steps = [line for line in lines if line.startswith("step ")]
        names = [step for step in Step if step is not Step.TEARDOWN]
        assert steps == [f"step {n}/{len(names)}: {name}" for n, name in enumerate(names, 1)]
        assert any(line.startswith("deleted server ") for line in lines), lines
        assert all(f"[{run}] {line}" in summary for run in shown for line in shown[run])


def new_talos_version_through_the_pr_workflow(
    program: ProgramStack, before: dict[str, Any]
) -> dict[str, Any]:
    """A pull request changing ``talos.version``: the commands ``preview.yml`` runs (what
    ``pulumi/actions`` with ``command: preview`` runs: login, stack select, a non-interactive
    preview whose output is the PR comment, the outputs), then those of ``deploy.yml`` once
    merged (``command: up``: ``up --yes --skip-preview``). The token comes from
    ``HCLOUD_TOKEN``, as the workflows pass it."""
    program.pulumi("config", "set", "--path", "talos.version", NEXT_TALOS_VERSION)
    ci = {"HCLOUD_TOKEN": TOKEN, "CI": "true"}
    program.pulumi("login", program.backend, env=ci)
    program.pulumi("stack", "select", program.name, env=ci)
    preview = program.run("preview", "--stack", program.name, "--non-interactive", env=ci)
    changed = {urn_parts(urn): ops for urn, ops in preview.steps.items() if ops != ["same"]}
    plan = program.plan
    snapshots = {
        ("pulumi-python:dynamic:Resource", f"talos-image-{s.architecture}")
        for s in plan.image.snapshots
    }
    for snapshot in snapshots:
        assert "replace" in changed.pop(snapshot), preview.steps
        # The PR comment names what is replaced.
        assert f"talos-image-{snapshot[1].rsplit('-', 1)[1]}" in preview.stdout
    assert "replace" in preview.stdout, preview.stdout
    assert changed.pop(("kubernetes:core/v1:Secret", "autoscaler-secrets-talos-config")) == [
        "update"
    ]
    # The autoscaler's values carry the snapshot ids' fingerprint: it is rolled too.
    autoscaler = (
        ("kubernetes:cozystack.io/v1alpha1:Package", "autoscaler-package")
        if plan.autoscaler.deploy == "package"
        else ("kubernetes:helm.sh/v3:Release", "autoscaler-release")
    )
    assert changed.pop(autoscaler) == ["update"]
    # The node controller reads each pool's new generation from its ConfigMap.
    assert changed.pop(("kubernetes:core/v1:ConfigMap", "node-controller-script")) == ["update"]
    # The dynamic providers are configured with the whole stack config, which changed.
    assert changed.pop(("pulumi:providers:pulumi-python", "default")) == ["update"]
    assert changed == {}, changed
    program.pulumi("stack", "output", "--json", "--show-secrets", "--stack", program.name, env=ci)

    up = program.run(
        "up", "--yes", "--skip-preview", "--stack", program.name, "--non-interactive", env=ci
    )
    assert "talos-image-" in up.stdout
    outputs = program.outputs()
    images = program.hetzner.state.images
    for arch, old_id in before["imageIds"].items():
        assert int(old_id) not in images, f"old {arch} snapshot {old_id} left"
        new = images[int(outputs["imageIds"][arch])]
        assert new["labels"]["talos-version"] == NEXT_TALOS_VERSION
    assert talos_cluster_config(program)["imagesForArch"] == outputs["imageIds"]
    assert outputs["networkId"] == before["networkId"]  # nothing else was replaced
    return outputs


def outputs_keep_the_contract(program: ProgramStack, expected: dict[str, Any]) -> None:
    outputs = program.outputs()
    assert set(outputs) == OUTPUT_CONTRACT
    shown = json.loads(program.pulumi("stack", "output", "--json", "--show-secrets").stdout)
    assert outputs == shown == expected  # nothing hidden as [secret]
    plan = program.plan
    namespace = plan.secrets.namespace
    assert outputs["autoscalerNamespace"] == namespace
    assert outputs["credentialsSecret"] == {
        "namespace": namespace,
        "name": CREDENTIALS_SECRET,
        "key": "token",
    }
    assert outputs["networkName"] == plan.network.name
    assert [group["name"] for group in outputs["nodeGroups"]] == list(plan.servers.pools)


def consumer_reads_the_outputs(program: ProgramStack, outputs: dict[str, Any]) -> None:
    """examples/consumer, as its README runs it, as another team's stack reading this one
    through a StackReference (its Pulumi.yaml uses the checkout's .venv)."""
    consumer = program.checkout / "examples" / "consumer"
    name = f"reads-{program.name}"
    program.pulumi("stack", "init", name, cwd=consumer)
    try:
        program.pulumi(
            "config",
            "set",
            "producerStack",
            f"organization/{PROJECT}/{program.name}",
            cwd=consumer,
        )
        program.pulumi("preview", cwd=consumer)
        program.pulumi("up", "--yes", cwd=consumer)
        read = json.loads(program.pulumi("stack", "output", "--json", cwd=consumer).stdout)
        expected = {
            "privateNetworkId": int(outputs["networkId"]),
            "talosImageAmd64": outputs["imageIds"].get("amd64"),
            "talosImageArm64": outputs["imageIds"].get("arm64"),  # None: not exported
            "autoscalerLogsCommand": outputs["kubectlLogs"],
        }
        assert read == {key: value for key, value in expected.items() if value is not None}
        program.pulumi("destroy", "--yes", cwd=consumer)
    finally:
        program.pulumi("stack", "rm", "--yes", "--force", name, cwd=consumer)


#: A workload on the autoscaled nodes, guarded by a PodDisruptionBudget (`minAvailable: 2`).
WORKLOAD_NAMESPACE = "rollout-workload"
WORKLOAD = "web"


@dataclass
class Outdated:
    """Autoscaled nodes of the stack's first pool that booted the generation before a change,
    and the guarded workload on them, watched from before the change on."""

    pool: str
    generation: str
    #: Node name -> its server's id.
    servers: dict[str, int]
    pool_stand_in: PoolStandIn
    watcher: Watcher


def outdated_nodes_run_a_guarded_workload(
    program: ProgramStack, outputs: dict[str, Any], kubelet: KubeletStandIn, background: Background
) -> Outdated:
    """Before the ``talos.version`` change: three nodes as the autoscaler makes them from the
    stack's config — servers labelled with the pool, in the stack's network, each with its
    node's name and address; Nodes labelled with the pool and the generation their worker
    config says (the ``poolGenerations`` output, which the controller is given too) — running
    a Deployment of three pods, one a node, whose PDB says ``minAvailable: 2``."""
    kube, hetzner, plan = program.kube, program.hetzner, program.plan
    pool = plan.servers.pools[0]
    generation = outputs["poolGenerations"][pool]
    namespace = plan.secrets.namespace
    controller = program.get(f"/api/v1/namespaces/{namespace}/configmaps/{CONTROLLER_NAME}")
    assert json.loads(controller["data"][CONTROLLER_CONFIG_FILE])["pools"] == {pool: generation}
    network_id = int(outputs["networkId"])
    servers = {}
    for index in range(3):
        name, address = f"{pool}-0a{index:02x}", subnet_host(plan, 30 + index)
        servers[name] = hetzner.add_server(
            name, {NODE_GROUP_LABEL: pool}, private_ips={network_id: address}
        )
        register_node(kube, name, address, {NODE_GROUP_LABEL: pool, GENERATION_LABEL: generation})

    call(
        kube,
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WORKLOAD_NAMESPACE}},
    )
    kubelet.elsewhere.add(WORKLOAD_NAMESPACE)
    pool_stand_in = PoolStandIn(kube, WORKLOAD_NAMESPACE, list(servers))
    background.start(pool_stand_in)
    budget = pdb(WORKLOAD_NAMESPACE, WORKLOAD, 2)
    call(
        kube,
        "POST",
        f"/apis/policy/v1/namespaces/{WORKLOAD_NAMESPACE}/poddisruptionbudgets",
        budget,
    )
    pods = deployment(WORKLOAD_NAMESPACE, WORKLOAD, 3, node_selector={NODE_GROUP_LABEL: pool})
    call(kube, "POST", f"/apis/apps/v1/namespaces/{WORKLOAD_NAMESPACE}/deployments", pods)
    eventually(
        lambda: ready_nodes(kube, WORKLOAD_NAMESPACE, WORKLOAD) == sorted(servers),
        "one pod Ready on each outdated node",
        60,
    )
    eventually(
        lambda: disruptions_allowed(kube, WORKLOAD_NAMESPACE, WORKLOAD) == 1,
        "the disruption controller allows one disruption",
        60,
    )
    watcher = Watcher(kube, WORKLOAD_NAMESPACE, WORKLOAD)
    background.start(watcher)
    return Outdated(pool, generation, servers, pool_stand_in, watcher)


def controller_replaces_the_outdated_nodes(
    program: ProgramStack,
    outputs: dict[str, Any],
    outdated: Outdated,
    kubelet: KubeletStandIn,
    tmp_path: Path,
) -> int:
    """After the ``up``: the node controller as its Deployment runs it — the scripts and
    ``config.json`` of its ConfigMap as Pulumi wrote them into the API server, its
    ServiceAccount's token, the Hetzner token of the stack's Secret, its own pacing (a pass
    every 10 s while it drains) — replaces every outdated node, one at a time, without the
    PDB ever violated (sampled every 0.2 s since before the change). The autoscaler's part
    (a new node of the new generation for the evicted pods) is played by the test. Returns
    the new node's server (destroy's sweep deletes it)."""
    kube, hetzner, plan = program.kube, program.hetzner, program.plan
    up_ended = program.finished
    pool, old = outdated.pool, outdated.generation
    new = outputs["poolGenerations"][pool]
    assert new != old
    namespace = plan.secrets.namespace
    spare, address = f"{pool}-0b00", subnet_host(plan, 40)
    spare_id = hetzner.add_server(
        spare, {NODE_GROUP_LABEL: pool}, private_ips={int(outputs["networkId"]): address}
    )
    register_node(kube, spare, address, {NODE_GROUP_LABEL: pool, GENERATION_LABEL: new})
    outdated.pool_stand_in.nodes.append(spare)

    hetzner_requests = len(hetzner.state.requests)
    knobs = {"HCLOUD_ENDPOINT": hetzner.endpoint, "NODE_CONTROLLER_HEALTH_PORT": str(free_port())}
    account_variable = "NODE_CONTROLLER_SERVICE_ACCOUNT_DIR"
    started = time.monotonic()
    with helper_pod(kube, namespace, CONTROLLER_NAME, tmp_path, account_variable, knobs) as pod:
        config = json.loads(pod.files[CONTROLLER_CONFIG_FILE])
        assert config["pools"] == outputs["poolGenerations"] == {pool: new}
        assert config["networkId"] == int(outputs["networkId"])
        eventually(
            lambda: (
                pod.log.read_text().count("; the autoscaler replaces it") == len(outdated.servers)
            ),
            "every outdated node replaced",
            timeout=60 * len(outdated.servers) + 60,
        )
        replaced = time.monotonic()
    eventually(
        lambda: not set(outdated.servers) & outdated.watcher.samples[-1].nodes,
        "the watcher samples the last deletion",
    )
    outdated.watcher.stop()
    samples: list[Sample] = list(outdated.watcher.samples)
    timeline = [
        f"{0:6.1f}s `pulumi up` ends (the ConfigMap holds generation {new}; was {old})",
        f"{started - up_ended:6.1f}s the controller starts",
        *outdated.watcher.timeline(
            tuple(outdated.servers), since=up_ended - outdated.watcher.started
        ),
        f"{replaced - up_ended:6.1f}s every outdated node replaced",
    ]
    log = pod.log.read_text()
    assert pod.process.returncode in (0, -15), log
    assert "Forbidden" not in log and " 403" not in log, log
    assert not outdated.pool_stand_in.errors, outdated.pool_stand_in.errors

    # Each outdated node: decided on with both generations, cordoned, drained; its server
    # and Node deleted. The new node stays.
    for name, server_id in outdated.servers.items():
        assert (
            f"node {name} (pool {pool}, server {server_id}): generation {old}, current {new}: "
            "cordoned, draining" in log
        ), log
        assert (
            f"node {name} (pool {pool}): drained; deleted server {server_id} "
            f"(generation {old}, current {new})" in log
        ), log
        assert server_id not in hetzner.state.servers
        assert program.get(f"/api/v1/nodes/{name}") is None
        events = program.get(
            f"/api/v1/namespaces/default/events?fieldSelector=involvedObject.name={name}"
        )
        assert "RolloutDraining" in {event["reason"] for event in events["items"]}
    assert spare_id in hetzner.state.servers
    assert program.get(f"/api/v1/nodes/{spare}") is not None
    eventually(
        lambda: ready_nodes(kube, WORKLOAD_NAMESPACE, WORKLOAD) == [spare] * 3,
        "the workload Ready again, on the new node",
    )

    # Sampled from before the `up` to the last replacement: the PDB never violated, one node
    # at a time, the other node of the cluster never touched.
    assert samples and samples[0].at < up_ended - outdated.watcher.started
    for sample in samples:
        assert sample.ready >= 2, sample
        assert sample.disruptions_allowed is None or sample.disruptions_allowed >= 0, sample
        assert len(sample.cordoned) <= 1, sample
        assert KUBELET_NODE in sample.nodes and KUBELET_NODE not in sample.cordoned

    # What the controller asked: the Hetzner emulator's requests, the API server's audit log.
    hetzner_asked = Counter(
        f"{method} {re.sub(r'/[0-9]+', '/{id}', path)}"
        for method, path in hetzner.state.requests[hetzner_requests:]
    )
    audited = kube.audited(f"system:serviceaccount:{namespace}:{CONTROLLER_NAME}")
    kube_asked = Counter(
        " ".join(
            [
                event["verb"],
                "/".join(
                    part
                    for part in (
                        event["objectRef"]["resource"],
                        event["objectRef"].get("subresource"),
                    )
                    if part
                ),
                str(event["responseStatus"]["code"]),
            ]
        )
        for event in audited
    )
    assert hetzner_asked["DELETE /v1/servers/{id}"] == len(outdated.servers), hetzner_asked
    assert kube_asked["delete nodes 200"] == len(outdated.servers), kube_asked
    assert kube_asked["create pods/eviction 201"] >= len(outdated.servers), kube_asked
    assert not [key for key in kube_asked if key.endswith(" 403")], kube_asked

    # The workload goes (the namespace's pods confirmed gone by the pool stand-in).
    call(kube, "DELETE", f"/api/v1/namespaces/{WORKLOAD_NAMESPACE}")
    eventually(
        lambda: program.get(f"/api/v1/namespaces/{WORKLOAD_NAMESPACE}") is None,
        f"namespace {WORKLOAD_NAMESPACE} finalized",
    )
    kubelet.elsewhere.discard(WORKLOAD_NAMESPACE)

    print(
        f"\nchained rollout of {len(outdated.servers)} nodes, from the end of `up`:\n"
        + "\n".join(timeline)
        + f"\nminimum {WORKLOAD} pods Ready: {min(sample.ready for sample in samples)} "
        f"(PDB minAvailable 2), {len(samples)} samples"
        + "\ncontroller's Kubernetes requests (audit log): "
        + ", ".join(f"{key}: {count}" for key, count in sorted(kube_asked.items()))
        + f" ({sum(kube_asked.values())})"
        + "\ncontroller's Hetzner requests: "
        + ", ".join(f"{key}: {count}" for key, count in sorted(hetzner_asked.items()))
        + f" ({sum(hetzner_asked.values())})"
    )
    return spare_id


def subnet_host(plan: StackPlan, index: int) -> str:
    """The ``index``-th address of the stack's subnet (where the autoscaler's servers are)."""
    return str(ipaddress.ip_network(plan.network.subnet)[index])


def provider_id_setter_registers_nodes(
    program: ProgramStack, outputs: dict[str, Any], tmp_path: Path
) -> int:
    """The setter's script, as its Deployment runs it (from the ConfigMap, with the
    ServiceAccount's token and the Secret's Hetzner token), against the real API server."""
    kube, hetzner = program.kube, program.hetzner
    namespace = program.plan.secrets.namespace
    pool = program.plan.servers.pools[0]
    network_id = int(outputs["networkId"])
    address = subnet_host(program.plan, 5)
    server_id = hetzner.add_server(
        f"{pool}-7a3c", {NODE_GROUP_LABEL: pool}, private_ips={network_id: address}
    )
    register_node(kube, f"{pool}-7a3c", address, {NODE_GROUP_LABEL: pool})
    register_node(kube, "bare-metal-1", "192.168.1.10", {})

    knobs = {
        "HCLOUD_ENDPOINT": hetzner.endpoint,
        "PROVIDER_ID_SETTER_LOOP_SECONDS": "0.5",
        "PROVIDER_ID_SETTER_HEALTH_PORT": str(free_port()),
    }
    account_variable = "PROVIDER_ID_SETTER_SERVICE_ACCOUNT_DIR"
    with helper_pod(kube, namespace, SETTER_NAME, tmp_path, account_variable, knobs) as setter:
        eventually(
            lambda: (
                (program.get(f"/api/v1/nodes/{pool}-7a3c") or {}).get("spec", {}).get("providerID")
            ),
            "the setter registers the node",
            timeout=30,
        )
    log, token = setter.log.read_text(), setter.token
    assert (
        program.get(f"/api/v1/nodes/{pool}-7a3c")["spec"]["providerID"] == f"hcloud://{server_id}"
    ), log
    assert "providerID" not in program.get("/api/v1/nodes/bare-metal-1")["spec"]
    assert program.get(f"/api/v1/nodes/{KUBELET_NODE}")["spec"].get("providerID") is None
    assert "Forbidden" not in log and "403" not in log, log

    # Its ClusterRole is all it gets: no Secrets.
    status, _ = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets", token=token)
    assert status == 403
    # The API server's providerID rule, as the setter meets it, and as our stand-in answers.
    patch = {"spec": {"providerID": "hcloud://999"}}
    real = kube.request(
        "PATCH", f"/api/v1/nodes/{pool}-7a3c", patch, content_type=MERGE_PATCH, token=token
    )
    with KubernetesApiStandIn(tmp_path / "stand-in") as stand_in:
        stand_in.add_node(f"{pool}-7a3c", internal_ip=address, provider_id=f"hcloud://{server_id}")
        imitated = stand_in_patch(stand_in, f"/api/v1/nodes/{pool}-7a3c", patch)
    assert real[0] == imitated[0] == 422
    for key in ("kind", "status", "reason", "message", "code"):
        assert real[1][key] == imitated[1][key], (key, real[1], imitated[1])
    assert real[1]["details"]["causes"] == imitated[1]["details"]["causes"]
    return server_id


def stand_in_patch(stand_in: KubernetesApiStandIn, path: str, body: Any) -> tuple[int, Any]:
    """A merge patch sent to the Kubernetes API stand-in with its ServiceAccount token."""
    request = urllib.request.Request(
        stand_in.url + path,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Content-Type": MERGE_PATCH, "Authorization": f"Bearer {stand_in.token}"},
    )
    context = ssl.create_default_context(cafile=str(stand_in.service_account_dir / "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def destroy_leaves_nothing(
    program: ProgramStack, outputs: dict[str, Any], registered: list[int]
) -> None:
    """Autoscaled servers (as the autoscaler creates them) and their Nodes are in the way;
    destroy deletes them and everything the stack made, and nothing else."""
    kube, hetzner, plan = program.kube, program.hetzner, program.plan
    network_id = int(outputs["networkId"])
    ours = list(registered)
    for index, pool in enumerate(plan.servers.pools):
        address = subnet_host(plan, 20 + index)
        server_id = hetzner.add_server(
            f"{pool}-{index:04x}", {NODE_GROUP_LABEL: pool}, private_ips={network_id: address}
        )
        register_node(
            kube,
            f"{pool}-{index:04x}",
            address,
            {NODE_GROUP_LABEL: pool},
            provider_id=f"hcloud://{server_id}",
        )
        ours.append(server_id)
    # Not ours: the same pool label in another network, a server in no network, bare metal.
    other_network = hetzner.add_network("other-project", "10.200.0.0/16")
    pool = plan.servers.pools[0]
    elsewhere = hetzner.add_server(
        f"{pool}-elsewhere", {NODE_GROUP_LABEL: pool}, private_ips={other_network: "10.200.0.5"}
    )
    register_node(
        kube,
        f"{pool}-elsewhere",
        "10.200.0.5",
        {NODE_GROUP_LABEL: pool},
        provider_id=f"hcloud://{elsewhere}",
    )
    bastion = hetzner.add_server("bastion", {"team": "platform"})
    if program.get("/api/v1/nodes/bare-metal-1") is None:
        register_node(kube, "bare-metal-1", "192.168.1.10", {})

    destroyed = program.run("destroy", "--yes")
    assert {op for ops in destroyed.steps.values() for op in ops} == {"delete"}

    for server_id in ours:
        assert server_id not in hetzner.state.servers
    assert set(hetzner.state.servers) == {elsewhere, bastion}
    nodes = {node["metadata"]["name"] for node in program.get("/api/v1/nodes")["items"]}
    assert nodes == {f"{pool}-elsewhere", "bare-metal-1", KUBELET_NODE}
    assert list(hetzner.state.networks) == [other_network]
    assert hetzner.state.placement_groups == {}
    assert hetzner.state.images == {}
    assert hetzner.state.ssh_keys == {}
    namespace = plan.secrets.namespace
    for path in (
        f"/api/v1/namespaces/{namespace}/secrets/{CREDENTIALS_SECRET}",
        f"/api/v1/namespaces/{namespace}/secrets/{TALOS_CONFIG_SECRET}",
        f"/api/v1/namespaces/{namespace}/configmaps/{SETTER_NAME}",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{SETTER_NAME}",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{SETTER_NAME}",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT_NAME}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{CLUSTER_ROLE}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{CLUSTER_ROLE}",
        f"/apis/cozystack.io/v1alpha1/packages/{PACKAGE_NAME}",
    ):
        assert program.get(path) is None, path
    if plan.secrets.retain_namespace:  # Cozystack's namespace: kept, empty of ours
        assert program.get(f"/api/v1/namespaces/{namespace}") is not None
    else:
        eventually(
            lambda: program.get(f"/api/v1/namespaces/{namespace}") is None,
            f"namespace {namespace} finalized",
        )
    eventually(
        lambda: not (program.get(f"/api/v1/namespaces/{namespace}/pods") or {}).get("items"),
        "pods gone",
    )
    program.pulumi("stack", "rm", "--yes", program.name)
    program.removed = True
    assert program.name not in program.pulumi("stack", "ls").stdout


@pytest.fixture
def derive(
    kube: KubeCluster,
    kubelet: KubeletStandIn,
    pulumi_env: PulumiEnv,
    stand_ins: StandIns,
    checkout: Path,
    tmp_path: Path,
) -> Iterator[Callable[[str, dict[str, Any]], ProgramStack]]:
    """Stacks derived from the shipped ones, pointed at the stand-ins; whatever a failed test
    leaves is destroyed, so the next test starts from an empty API server."""
    made: list[ProgramStack] = []

    def derived(source: str, changes: dict[str, Any]) -> ProgramStack:
        to_stand_ins = {
            "hcloud:endpoint": stand_ins.hetzner.endpoint,
            f"{PROJECT}:talos": {"imageFactoryUrl": stand_ins.factory.url},
            **changes,
        }
        program = ProgramStack.derived(
            pulumi_env, kube, stand_ins, checkout, tmp_path, source, to_stand_ins
        )
        made.append(program)
        return program

    yield derived
    for program in made:
        if program.initialized and not program.removed:
            with contextlib.suppress(AssertionError):
                program.pulumi("destroy", "--yes")
                program.pulumi("stack", "rm", "--yes", program.name)
    for node in (kube.get("/api/v1/nodes") or {}).get("items", []):
        if node["metadata"]["name"] != KUBELET_NODE:
            kube.request("DELETE", f"/api/v1/nodes/{node['metadata']['name']}")
    assert not kubelet.errors, kubelet.errors


def test_dev_stack_package_mode_end_to_end(
    derive: Callable[[str, dict[str, Any]], ProgramStack],
    kubelet: KubeletStandIn,
    tmp_path: Path,
) -> None:
    program = derive("dev", {})
    program.init()
    preview_shows_every_planned_create(program)
    outputs = up_creates_the_stack(program)
    nothing_changes(program)
    state_holds_no_plaintext_secret(program)
    with Background() as background:
        outdated = outdated_nodes_run_a_guarded_workload(program, outputs, kubelet, background)
        outputs = new_talos_version_through_the_pr_workflow(program, outputs)
        replacement = controller_replaces_the_outdated_nodes(
            program, outputs, outdated, kubelet, tmp_path
        )
    outputs_keep_the_contract(program, outputs)
    consumer_reads_the_outputs(program, outputs)
    registered = provider_id_setter_registers_nodes(program, outputs, tmp_path)
    destroy_leaves_nothing(program, outputs, [registered, replacement])


def test_prod_stack_helm_mode_end_to_end(
    derive: Callable[[str, dict[str, Any]], ProgramStack],
    stand_ins: StandIns,
    tmp_path: Path,
) -> None:
    program = derive("prod", {f"{PROJECT}:autoscaler": {"chartRepository": stand_ins.charts.url}})
    program.init()
    preview_shows_every_planned_create(program)
    outputs = up_creates_the_stack(program)
    # Helm read the mirror's index and fetched the chart from it.
    assert {"/index.yaml", f"/{stand_ins.charts.file}"} <= set(stand_ins.charts.downloads)
    nothing_changes(program)
    state_holds_no_plaintext_secret(program)
    outputs = new_talos_version_through_the_pr_workflow(program, outputs)
    outputs_keep_the_contract(program, outputs)
    consumer_reads_the_outputs(program, outputs)
    destroy_leaves_nothing(program, outputs, [])
