"""A preview with a token checks server types against the live API; plain-text secrets warn."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from cli.render import main as render_main

from tests.conftest import REPO, MockRuntime
from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator

MAIN = REPO / "__main__.py"
P = "hcloud-talos-autoscaler"


#: A readable autoscaler token (64 characters, as Hetzner tokens are).
PLAIN_AUTOSCALER_TOKEN = "plain-autoscaler-token-" + "0" * 41


def dev_config(**pool: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    config[f"{P}:autoscaler"]["nodeGroups"][0].update(pool)
    return {**config, "hcloud:token": TEST_TOKEN}


def preview_error(runtime: MockRuntime, config: dict[str, Any]) -> str:
    with pytest.raises(pulumi.RunError) as caught:
        runtime.run(MAIN, config, ["hcloud:token"])
    assert runtime.resources == []
    return str(caught.value)


def test_a_type_sold_out_in_the_pools_location_fails_the_preview(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator
) -> None:
    hetzner_api.orderable["cpx22"] = {"nbg1", "hel1"}
    message = preview_error(pulumi_preview, dev_config())
    assert (
        f"{P}:autoscaler.nodeGroups[0]: instanceType cpx22 cannot be ordered in fsn1 (the live "
        f"list of {hetzner_api.endpoint}: offered in hel1, nbg1); pick another type or region"
    ) in message


def test_the_builder_type_is_checked_in_the_builders_location(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator
) -> None:
    hetzner_api.orderable["cx23"] = set()
    message = preview_error(pulumi_preview, dev_config())
    assert "image.builderServerTypes: amd64: cx23 cannot be ordered in fsn1" in message


def test_the_live_list_decides_over_the_built_in_table(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator, tmp_path: Path
) -> None:
    # "tiny" exists only in the emulator's list: unknown offline, orderable at preview.
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    config = dev_config(instanceType="tiny")
    config[f"{P}:talos"]["workerConfigFile"] = str(REPO / "examples" / "worker.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    assert render_main(["render", "--project-dir", str(tmp_path), "--stack", "dev"]) == 2
    exports = pulumi_preview.run(MAIN, config, ["hcloud:token"])
    assert exports["nodeGroups"].value[0]["instanceType"] == "tiny"
    # ... and a type of the built-in table the project's API does not offer is refused.
    message = preview_error(pulumi_preview, dev_config(instanceType="cax31"))
    assert (
        f"'cax31' is not a Hetzner Cloud server type (the live list of {hetzner_api.endpoint})"
        in message
    )


def test_a_retiring_type_is_a_warning(
    pulumi_preview: MockRuntime, hetzner_api: HetznerEmulator
) -> None:
    hetzner_api.retiring.add("cpx22")
    pulumi_preview.run(MAIN, dev_config(), ["hcloud:token"])
    assert any(
        "server type cpx22 is being retired by Hetzner" in w for w in pulumi_preview.warnings
    )


def test_an_unreachable_api_is_a_warning_and_the_table_is_used(
    pulumi_preview: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _closed_port()
    monkeypatch.setenv("HCLOUD_ENDPOINT", f"http://127.0.0.1:{closed}/v1")
    started = time.monotonic()
    exports = pulumi_preview.run(MAIN, dev_config(), ["hcloud:token"])
    assert time.monotonic() - started < 10
    assert exports["nodeGroups"].value[0]["instanceType"] == "cpx22"
    assert any(
        f"could not read the server types from the Hetzner API at http://127.0.0.1:{closed}/v1"
        in warning
        and "checked against the built-in table only" in warning
        for warning in pulumi_preview.warnings
    ), pulumi_preview.warnings


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


# ---- plain-text secrets -------------------------------------------------------------------


def test_a_plain_text_token_in_the_stack_is_a_warning_in_the_preview(
    pulumi_runtime: MockRuntime,
) -> None:
    config = dev_config()
    pulumi_runtime.run(MAIN, config, [])
    plain = [w for w in pulumi_runtime.warnings if "stored in plain text" in w]
    assert plain == [
        "hcloud:token is stored in plain text in Pulumi.dev.yaml: anyone who can read the file or "
        "its history has it. Encrypt it with `pulumi config set --secret hcloud:token` (this "
        "replaces the value with `secure: ...`), then rotate the secret, since the plain text "
        "stays in the history"
    ]
    assert TEST_TOKEN not in " ".join(pulumi_runtime.warnings)
    pulumi_runtime.run(MAIN, config, ["hcloud:token"])
    assert not [w for w in pulumi_runtime.warnings if "stored in plain text" in w]


def test_a_token_from_the_environment_is_no_plain_text_warning(
    pulumi_runtime: MockRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = dev_config()
    del config["hcloud:token"]
    monkeypatch.setenv("HCLOUD_TOKEN", TEST_TOKEN)
    pulumi_runtime.run(MAIN, config, [])
    assert not [w for w in pulumi_runtime.warnings if "plain text" in w]
    config[f"{P}:autoscaler"]["token"] = PLAIN_AUTOSCALER_TOKEN
    pulumi_runtime.run(MAIN, config, [])
    assert [w.split(" is stored")[0] for w in pulumi_runtime.warnings if "plain text" in w] == [
        "autoscaler.token"
    ]
    pulumi_runtime.run(MAIN, config, [f"{P}:autoscaler"])
    assert not [w for w in pulumi_runtime.warnings if "plain text" in w]


def test_plain_text_secrets_in_a_stack_file_are_a_warning_in_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    config = dev_config()
    config[f"{P}:autoscaler"]["token"] = PLAIN_AUTOSCALER_TOKEN
    config[f"{P}:talos"].pop("workerConfigFile")
    config[f"{P}:talos"]["workerConfig"] = (REPO / "examples" / "worker.yaml").read_text()
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    assert render_main(["render", "--project-dir", str(tmp_path), "--stack", "dev"]) == 0
    captured = capsys.readouterr()
    for key, command in [
        ("hcloud:token", "pulumi config set --secret hcloud:token"),
        ("autoscaler.token", "pulumi config set --secret --path autoscaler.token"),
        (
            "talos.workerConfig",
            "pulumi config set --secret --path talos.workerConfig < worker.yaml",
        ),
    ]:
        assert f"warning: {key} is stored in plain text in Pulumi.dev.yaml" in captured.err
        assert f"Encrypt it with `{command}`" in captured.err
    for secret in (TEST_TOKEN, PLAIN_AUTOSCALER_TOKEN, "7x1m9q.0sample0token00"):
        assert secret not in captured.out + captured.err


def test_encrypted_secrets_in_a_stack_file_give_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    config = dev_config()
    config["hcloud:token"] = {"secure": "v1:AAAAbm90LWEtcmVhbC1jaXBoZXJ0ZXh0"}
    config[f"{P}:talos"]["workerConfigFile"] = str(REPO / "examples" / "worker.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))
    assert render_main(["render", "--project-dir", str(tmp_path), "--stack", "dev"]) == 0
    assert "plain text" not in capsys.readouterr().err
