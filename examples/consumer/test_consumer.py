"""The consumer reads the producer's documented output names (under Pulumi mocks)."""

from __future__ import annotations

import asyncio
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings

PROGRAM = Path(__file__).parent / "__main__.py"
#: What the producer (this repository's program) exports, by its documented names.
PRODUCER_OUTPUTS = {
    "networkId": "4711",
    "networkName": "cozystack-vswitch",
    "networkZone": "eu-central",
    "subnetIpRange": "10.100.0.0/24",
    "imageIds": {"amd64": "1001", "arm64": "1002"},
    "autoscalerNamespace": "cozy-cluster-autoscaler-hetzner",
}


class ProducerMocks(pulumi.runtime.Mocks):
    def __init__(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs
        self.references: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            self.references.append(args.inputs["name"])
            return args.inputs["name"], {"name": args.inputs["name"], "outputs": self.outputs}
        raise AssertionError(f"the consumer creates no resources, got {args.typ}")

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        raise AssertionError(f"unexpected invoke {args.token}")


@pytest.fixture
def fresh_runtime() -> Iterator[None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    settings.ROOT.set(None)
    yield
    runtime_config.set_all_config({}, [])
    settings.ROOT.set(None)
    loop.close()


def run_consumer(mocks: ProducerMocks) -> dict[str, Any]:
    pulumi.runtime.set_mocks(mocks, project="autoscaler-consumer", stack="dev", preview=False)
    runtime_config.set_all_config(
        {"autoscaler-consumer:producerStack": "acme/hcloud-talos-autoscaler/dev"}, []
    )
    exports: dict[str, Any] = {}

    def program() -> Any:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        root = settings.get_root_resource()
        assert root is not None
        outputs = pulumi.Output.from_input(dict(root.outputs))  # type: ignore[attr-defined]
        return outputs.apply(exports.update)

    pulumi.runtime.test(program)()
    return exports


def test_consumer_reads_the_documented_outputs(fresh_runtime: None) -> None:
    mocks = ProducerMocks(PRODUCER_OUTPUTS)
    exports = run_consumer(mocks)
    assert mocks.references == ["acme/hcloud-talos-autoscaler/dev"]
    assert exports == {
        "privateNetworkId": 4711,
        "talosImageAmd64": "1001",
        "talosImageArm64": "1002",
        "autoscalerLogsCommand": "kubectl -n cozy-cluster-autoscaler-hetzner logs "
        "deployment/cluster-autoscaler-hetzner-hetzner-cluster-autoscaler -f",
    }


@pytest.mark.parametrize("missing", ["networkId", "imageIds", "autoscalerNamespace"])
def test_a_renamed_output_fails_the_consumer(fresh_runtime: None, missing: str) -> None:
    outputs = {name: value for name, value in PRODUCER_OUTPUTS.items() if name != missing}
    with pytest.raises(Exception, match=missing):
        run_consumer(ProducerMocks(outputs))
