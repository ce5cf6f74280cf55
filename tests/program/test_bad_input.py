"""Every input a user can get wrong gives a clean error naming the key, in bounded time.

One test per class of issue 14: inputs that used to raise a traceback, inputs that were
accepted although Hetzner or Kubernetes refuses them later, inputs that hung or ate memory.
The render command runs in-process (an escaping exception is the traceback a user would
see); the program runs under Pulumi mocks and must stop with the same problem lines.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from cli.render import main as render_main

from tests.conftest import REPO, MockRuntime, set_path, shipped_config
from tests.stand_ins.hetzner_api import TEST_TOKEN

P = "hcloud-talos-autoscaler"
WORKER = (REPO / "examples" / "worker.yaml").read_text()
#: Ten levels of nine-fold aliases: 9^10 leaves once expanded.
ALIAS_BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]\n" for level in range(1, 10)
)


def dev_config() -> dict[str, Any]:
    return shipped_config("dev", token=None)


def project(tmp_path: Path, config: dict[str, Any] | None = None, worker: str = WORKER) -> Path:
    """A project folder with the dev stack (``config`` replaces its config) and a worker config."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "worker.yaml").write_text(worker)
    (tmp_path / "Pulumi.dev.yaml").write_text(
        yaml.safe_dump({"config": dev_config() if config is None else config})
    )
    return tmp_path


def render(project_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and stderr of ``python -m components render`` run in this process."""
    # Bounded CPU time (a pathological input must not make the render spin) and no wait (a
    # minute of wall time); not a tighter wall clock, which other builds on a busy machine
    # would break.
    started, cpu_started = time.monotonic(), time.process_time()
    code = render_main(["render", "--project-dir", str(project_dir), "--stack", "dev", *args])
    assert time.process_time() - cpu_started < 2, "bad input must be refused in bounded time"
    assert time.monotonic() - started < 60, "the offline render must not wait for anything"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def changed(path: str, value: Any) -> dict[str, Any]:
    """The dev config with one key set (``section.key.0.key``); None deletes it."""
    config = copy.deepcopy(dev_config())
    first, *rest = path.split(".")
    target: Any = config if ":" in first else config[f"{P}:{first}"]
    set_path(target, [first] if ":" in first else rest, value)
    return config


# ---- what used to be a traceback ------------------------------------------------------

TRACEBACKS: list[tuple[str, Any, str]] = [
    ("hcloud:token", 12345, "hcloud:token: must be a non-empty string (got a number)"),
    ("hcloud:token", {"a": "b"}, "hcloud:token: must be a non-empty string (got a map)"),
    ("network.subnet", "fd00::/64", "network.subnet: fd00::/64 is not inside ipRange"),
    (
        "autoscaler.imageTag",
        "v1.30.0",
        "autoscaler.imageTag: v1.30.0 does not match Kubernetes 1.33.1",
    ),
    (
        "image.labels",
        {"bad key!": "x"},
        "image.labels: label key 'bad key!' is not a valid Hetzner",
    ),
    ("autoscaler.extraArgs", {"v": "4\n- --nodes=0:9:cx23:fsn1:x"}, "contains a quote, backslash"),
]


@pytest.mark.parametrize(("path", "value", "expected"), TRACEBACKS)
def test_former_tracebacks_are_clean_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any, expected: str
) -> None:
    code, err = render(project(tmp_path, changed(path, value)), capsys)
    assert code == 2
    assert expected in err, err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"config:\n  x: \xff\xfe\n", "is not UTF-8 text (byte 0xff; a binary file"),
        (bytes(range(256)) * 4, "is not UTF-8 text (byte 0x80"),
        (b"- a\n- b\n", "must be a mapping with a 'config' key, got a list"),
        (b"config: [1, 2]\n", "'config' must be a mapping of keys to values"),
        (b"config:\n  1: 2\n", "config key 1 is not a string"),
        (b"config:\n  x: \x00\n", "contains the character U+0000"),
        (b"config:\n  x: [\n", "at line 3, column 1"),
    ],
)
def test_unreadable_stack_files_name_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    folder = project(tmp_path)
    (folder / "Pulumi.dev.yaml").write_bytes(content)
    code, err = render(folder, capsys)
    assert code == 2
    assert "Pulumi.dev.yaml" in err and expected in err, err


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        ("machine:\n  type: \udcff\n", "is not UTF-8 text (byte 0xff"),
        (None, "is not UTF-8 text (byte 0x80"),
        (
            WORKER.replace("machine:\n", "machine:\n  nodeLabels: [a, b]\n", 1),
            "machine.nodeLabels: must be a mapping (key: value), got ['a', 'b']",
        ),
        (
            WORKER.replace("  kubelet:\n", "  kubelet: [x]\n  kubeletx:\n", 1),
            "machine.kubelet: must be a mapping",
        ),
        (WORKER.replace("machine:\n", "machine: 5\nmachinex:\n", 1), "machine: must be a mapping"),
        (
            WORKER.replace("      - 10.96.0.0/16", "      10.96.0.0/16", 1).replace(
                "    serviceSubnets:\n", "    serviceSubnets: 10.96.0.0/16\n    x:\n", 1
            ),
            "must be a list",
        ),
        ("- just\n- a list\n", "every document must be a mapping"),
    ],
)
def test_unreadable_worker_configs_name_the_key_or_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], worker: str | None, expected: str
) -> None:
    folder = project(tmp_path)
    path = folder / "examples" / "worker.yaml"
    if worker is None:
        path.write_bytes(bytes(range(256)) * 4)
    else:
        path.write_bytes(worker.encode("utf-8", "surrogateescape"))
    code, err = render(folder, capsys)
    assert code == 2
    assert expected in err, err


def test_out_pointing_at_a_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project(tmp_path)
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code, err = render(folder, capsys, "--out", str(target))
    assert code == 2
    assert f"--out: {target} is a file; give a folder" in err
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("stack", ["../x", "../../etc/passwd", "..", ".", "a/b/c/d", "dev stack"])
def test_stack_names_outside_pulumis_rule_read_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stack: str
) -> None:
    (tmp_path / "project").mkdir()
    folder = project(tmp_path / "project")
    (tmp_path / "Pulumi.x.yaml").write_text(yaml.safe_dump({"config": dev_config()}))
    before = sorted(path for path in tmp_path.rglob("*"))
    code = render_main(["render", "--project-dir", str(folder), "--stack", stack])
    err = capsys.readouterr().err
    assert code == 2
    assert "--stack:" in err and "Traceback" not in err
    assert sorted(path for path in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_qualified_stack_names_read_the_stack_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project(tmp_path)
    code = render_main(["render", "--project-dir", str(folder), "--stack", "acme/dev"])
    assert code == 0, capsys.readouterr().err
    assert (folder / "render" / "dev" / "package.yaml").is_file()


# ---- accepted before, refused later by Hetzner or Kubernetes ---------------------------

ACCEPTED_BUT_INVALID: list[tuple[str, Any, str]] = [
    (
        "autoscaler.nodeGroups.0.instanceType",
        "cpx99",
        "instanceType: 'cpx99' is not a Hetzner Cloud server type (the built-in table of "
        "hcloud-talos-autoscaler); did you mean",
    ),
    ("image.builderServerTypes", {"amd64": "cx9"}, "image.builderServerTypes: amd64: 'cx9' is not"),
    ("network.ipRange", "8.8.0.0/16", "network.ipRange: 8.8.0.0/16 is not a private range"),
    ("network.ipRange", "fd00::/48", "network.ipRange: fd00::/48 is an IPv6 range"),
    ("network.ipRange", "10.100.0.0/25", "smaller than Hetzner's minimum network size /24"),
    ("autoscaler.nodeGroups.0.maxSize", 10**30, "nodeGroups[0].maxSize: got"),
    ("autoscaler.nodeGroups.0.maxSize", 300, "the pools may grow to 300 servers (sum of maxSize)"),
    (
        "talos.nodeLabels",
        {"bad key!": "x"},
        "talos.nodeLabels: label key 'bad key!' is not valid in Kubernetes",
    ),
    ("talos.nodeLabels", {"a": "b c"}, "talos.nodeLabels: label 'a': value 'b c' is not valid"),
    (
        "talos.nodeLabels",
        {"Example.com/a": "b"},
        "the prefix 'Example.com' must be a DNS subdomain",
    ),
    ("talos.nodeLabels", {"a": "x" * 64}, "is not valid in Kubernetes: at most 63 characters"),
    ("autoscaler.nodeGroups.0.labels", {"-a": "b"}, "nodeGroups[0].labels: label key '-a'"),
    (
        "autoscaler.nodeGroups.0.taints",
        [{"key": "a b", "effect": "NoSchedule"}],
        "nodeGroups[0].taints[0].key: taint key 'a b'",
    ),
    (
        "autoscaler.extraArgs",
        {"cloud-provider": "aws"},
        "'cloud-provider' sets --cloud-provider, which the chart sets to hetzner",
    ),
    ("autoscaler.extraArgs", {"nodes": "1:5:cx23:fsn1:x"}, "'nodes' sets --nodes"),
    ("autoscaler.extraArgs", {"nodes_2": "1:5:cx23:fsn1:x"}, "'nodes_2' sets --nodes"),
    ("autoscaler.extraArgs", {"--cloud-config": "/x"}, "'--cloud-config' sets --cloud-config"),
    ("autoscaler.extraArgs", {"namespace": "kube-system"}, "sets --namespace"),
    ("autoscaler.extraArgs", {"Bad Flag": 1}, "'Bad Flag' is not an autoscaler flag name"),
    (
        "autoscaler.namespace",
        "Cluster_Autoscaler",
        "autoscaler.namespace: 'Cluster_Autoscaler' is not a DNS label (RFC 1123)",
    ),
    ("autoscaler.namespace", "a" * 64, "is 64 characters long; a DNS label has at most 63"),
    (
        "autoscaler.smokeTest",
        {"replicas": 11},
        "autoscaler.smokeTest.replicas: 11 is more than the pools can hold (sum of maxSize: 10",
    ),
    ("autoscaler.smokeTest", {"replicas": 2**31}, "smokeTest.replicas: got 2147483648"),
    ("autoscaler.serverCreationTimeout", 10**9, "serverCreationTimeout: got 1000000000"),
    ("autoscaler.firewall", 'fw"x', "autoscaler.firewall: 'fw\"x' contains a quote"),
    ("image.labels", {"managed-by": "me"}, "managed-by identify the snapshot"),
    ("network.subnet", "10.100.0.0/31", "smaller than Hetzner's minimum subnet size /30"),
]


@pytest.mark.parametrize(("path", "value", "expected"), ACCEPTED_BUT_INVALID)
def test_what_hetzner_or_kubernetes_would_refuse_is_refused_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any, expected: str
) -> None:
    code, err = render(project(tmp_path, changed(path, value)), capsys)
    assert code == 2
    assert expected in err, err


def test_invalid_labels_of_the_base_worker_config_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = WORKER.replace("machine:\n", "machine:\n  nodeLabels:\n    team: a/b\n", 1)
    code, err = render(project(tmp_path, worker=worker), capsys)
    assert code == 2
    assert "machine.nodeLabels: label 'team': value 'a/b' is not valid in Kubernetes" in err


def test_valid_values_at_the_limits_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = changed("talos.nodeLabels", {"example.com/" + "a" * 63: "b" * 63, "empty": ""})
    config[f"{P}:autoscaler"]["extraArgs"] = {"scale-down-unneeded-time": "15m", "v": 2}
    config[f"{P}:autoscaler"]["smokeTest"] = {"replicas": 10}
    config[f"{P}:network"] = {"ipRange": "172.16.0.0/12", "subnet": "172.16.0.0/24"}
    code, err = render(project(tmp_path, config), capsys)
    assert code == 0, err


# ---- hangs and unbounded work ------------------------------------------------------------


def test_an_alias_bomb_in_the_stack_file_is_refused_without_expanding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project(tmp_path)
    stack = (folder / "Pulumi.dev.yaml").read_text()
    indented = "".join(f"    {line}\n" for line in ALIAS_BOMB.splitlines())
    bomb = stack.replace(f"  {P}:talos:\n", f"  {P}:talos:\n    nodeLabels: *a9\n", 1).replace(
        "config:\n", f"config:\n  {P}:bomb:\n{indented}", 1
    )
    (folder / "Pulumi.dev.yaml").write_text(bomb)
    code, err = render(folder, capsys)
    assert code == 2
    assert "expands to more than 100000 values" in err
    assert len(err) < 2_000


def test_an_alias_bomb_in_the_worker_config_is_refused_without_expanding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = WORKER.replace("machine:\n", "machine:\n  files: *a9\n", 1)
    code, err = render(project(tmp_path, worker=f"{ALIAS_BOMB}---\n{worker}"), capsys)
    assert code == 2
    assert "talos.workerConfigFile: is not valid YAML: expands to more than 100000 values" in err


def test_a_large_value_repeated_by_aliases_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Few values, but dumping them would write 250 MB: characters count too."""
    big = "x" * 500_000
    worker = WORKER.replace(
        "machine:\n",
        f"machine:\n  env: {{A: &big '{big}'}}\n  sysctls: {{{', '.join(f'k{i}: *big' for i in range(500))}}}\n",
        1,
    )
    code, err = render(project(tmp_path, worker=worker), capsys)
    assert code == 2
    assert "expands to more than 100000 values or 2097152 characters" in err


def test_a_multi_megabyte_worker_config_is_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = "".join(
        f"    - path: /var/f{index}\n      op: create\n      content: {'x' * 1000}\n"
        for index in range(5000)
    )
    worker = WORKER.replace("  certSANs: []\n", f"  certSANs: []\n  files:\n{files}", 1)
    code, err = render(project(tmp_path, worker=worker), capsys)
    assert code == 2
    assert "bytes, more than the 1048576 bytes this program reads" in err


def test_deep_nesting_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = changed("talos.nodeLabels", None)
    nested: Any = "x"
    for _ in range(100):
        nested = {"a": nested}
    config[f"{P}:talos"]["registryMirrors"] = nested
    code, err = render(project(tmp_path, config), capsys)
    assert code == 2
    assert "nested deeper than 64 levels" in err


def test_huge_values_are_shown_truncated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = render(project(tmp_path, changed("autoscaler.namespace", "N" * 500_000)), capsys)
    assert code == 2
    assert "N" * 100 not in err
    assert len(err) < 2_000


# ---- runtime failures and --debug ---------------------------------------------------------


def test_a_runtime_failure_exits_1_and_shows_the_traceback_only_with_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = project(tmp_path)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("cli.render.render_stack", broken)
    code = render_main(["render", "--project-dir", str(folder)])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: render failed: disk on fire (run with --debug for the traceback)" in err
    assert "Traceback" not in err
    code = render_main(["render", "--project-dir", str(folder), "--debug"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err and "disk on fire" in err


# ---- the program: the same messages in a preview ------------------------------------------

MAIN = REPO / "__main__.py"


def problem_lines(message: str) -> set[str]:
    return {line.strip() for line in message.splitlines() if line.startswith("  - ")}


#: Server types are the exception: a preview with a token checks the live list (below).
SAME_IN_PREVIEW: list[tuple[str, Any]] = [
    (path, value)
    for path, value, _ in ACCEPTED_BUT_INVALID + TRACEBACKS
    if not path.startswith(("hcloud:", "autoscaler.extraArgs", "image.builderServerTypes"))
    and not path.endswith("instanceType")
] + [("autoscaler.extraArgs", {"cloud-provider": "aws", "nodes_2": "x"})]


@pytest.mark.parametrize(("path", "value"), SAME_IN_PREVIEW)
def test_a_preview_stops_with_the_same_problems_as_render(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pulumi_preview: MockRuntime,
    path: str,
    value: Any,
) -> None:
    config = changed(path, value)
    _, err = render(project(tmp_path, config), capsys)
    config[f"{P}:talos"]["workerConfigFile"] = str(tmp_path / "examples" / "worker.yaml")
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_preview.run(MAIN, {**config, "hcloud:token": TEST_TOKEN}, ["hcloud:token"])
    assert problem_lines(str(caught.value)) == problem_lines(err)
    assert problem_lines(err)
    assert pulumi_preview.resources == []


def test_a_token_the_api_refuses_fails_the_preview_with_the_key(
    pulumi_preview: MockRuntime,
) -> None:
    # The engine hands every config value over as text: 12345 is the token "12345".
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_preview.run(MAIN, {**dev_config(), "hcloud:token": 12345})
    assert "hcloud:token: the Hetzner API at http://127.0.0.1:" in str(caught.value)
    assert "refused this token (unauthorized)" in str(caught.value)
    assert "12345" not in str(caught.value)
    assert pulumi_preview.resources == []


def _run_program(runtime: MockRuntime, mutate: Callable[[dict[str, Any]], None]) -> str:
    config = {**dev_config(), "hcloud:token": TEST_TOKEN}
    mutate(config)
    with pytest.raises(pulumi.RunError) as caught:
        runtime.run(MAIN, config, ["hcloud:token"])
    return str(caught.value)


def test_bad_input_found_while_outputs_resolve_stops_cleanly(
    pulumi_runtime: MockRuntime,
) -> None:
    """An existing network whose range does not hold the subnet is only known once looked up."""
    pulumi_runtime.mocks.existing_network["ipRange"] = "10.200.0.0/16"

    def reuse(config: dict[str, Any]) -> None:
        config[f"{P}:network"] = {"existing": "shared-net"}

    message = _run_program(pulumi_runtime, reuse)
    assert "network.subnet: 10.100.0.0/24 is not inside the range 10.200.0.0/16" in message
