"""Shared fixtures: a fresh Pulumi mock runtime per test.

Pitfalls this guards against (see docs/development.md):
- ``set_mocks`` at module level leaks one root stack and event loop across tests;
  here every test gets a new event loop, a new root ``Stack`` and new mocks.
- an assertion inside ``Output.apply`` silently never runs when the output is
  unknown or the test returns first; ``MockRuntime.run`` waits for every export
  and hands back plain values, so tests assert outside ``apply``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
import yaml
from google.protobuf import json_format
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.kubernetes_api import KubernetesApiStandIn

#: Fixtures of the image-build stand-ins (API emulator, Image Factory, real sshd), of a pool's
#: autoscaled servers (the destroy sweep and its provider), and of the end-to-end suite (real
#: engine pieces; used only by the opt-in tests/e2e).
pytest_plugins = [
    "tests.support.image_build",
    "tests.support.pool_servers",
    "tests.e2e.engine_fixtures",
]

REPO = Path(__file__).resolve().parents[1]


def _find_shared_reference() -> Path:
    """Reference material (test oracles only; the program never reads it).

    It sits beside the working clone; a CI clone elsewhere on the machine points at it
    with SHARED_REFERENCE or finds it at its fixed place.
    """
    candidates = [REPO.parent / "shared" / "reference", Path("/work/shared/reference")]
    if "SHARED_REFERENCE" in os.environ:
        candidates.insert(0, Path(os.environ["SHARED_REFERENCE"]))
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED_REFERENCE = _find_shared_reference()

#: Suites that run upstream tools built by scripts/toolchain.py: collected only when asked
#: for (`make oracles`, `make e2e`), never part of the default offline `make test`.
OPT_IN_SUITES = {"oracles": REPO / "tests" / "oracles", "e2e": REPO / "tests" / "e2e"}


def load_toolchain() -> ModuleType:
    """``scripts/toolchain.py`` (a script, not a package): where the opt-in suites' tools are."""
    name = "hcloud_talos_autoscaler_toolchain"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "toolchain.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, folder in OPT_IN_SUITES.items():
        parser.addoption(
            f"--{name}",
            action="store_true",
            help=f"also collect {folder.relative_to(REPO)} (needs `make {name}-toolchain`)",
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    for name, folder in OPT_IN_SUITES.items():
        inside = collection_path == folder or folder in collection_path.parents
        if inside and not config.getoption(name):
            return True
    return None


def shipped_config(stack: str, token: str | None = TEST_TOKEN) -> dict[str, Any]:
    """The config of the shipped ``Pulumi.<stack>.yaml`` (a fresh copy), and a token as
    `pulumi config set --secret hcloud:token` adds it (None: no token)."""
    config: dict[str, Any] = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return config if token is None else {**config, "hcloud:token": token}


def set_path(target: Any, keys: list[str], value: Any) -> None:
    """Set ``value`` at ``keys`` below ``target`` (list indexes as digits, missing maps made);
    None deletes the key."""
    *parents, last = keys
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if value is None:
        del target[last]
    else:
        target[last] = value


@dataclass
class Registered:
    """One resource registration as the engine would see it."""

    type: str
    name: str
    inputs: dict[str, Any]
    parent: str
    secret_paths: set[str]
    urn: str
    id: str
    #: URNs of the resources this one's inputs came from (how outputs were wired).
    dependencies: set[str] = field(default_factory=set)
    #: Outputs the engine is asked to store as secrets whatever their inputs were.
    additional_secret_outputs: set[str] = field(default_factory=set)

    def is_secret(self, key: str) -> bool:
        """Whether input ``key`` (or any value inside it) was sent to the engine as a secret."""
        return any(path == key or path.startswith(f"{key}.") for path in self.secret_paths)


@dataclass
class Exported:
    value: Any
    is_secret: bool
    is_known: bool


class RecordingMocks(pulumi.runtime.Mocks):
    """Resources get sequential numeric ids and echo their inputs as outputs.

    In a preview, resources to be created have no id and no outputs beyond their
    inputs yet, as the engine answers for them: those resolve as unknown.
    """

    def __init__(self, preview: bool = False) -> None:
        self.preview = preview
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.existing_network = {"id": 4711, "name": "shared-net", "ipRange": "10.100.0.0/16"}
        #: Fixed snapshot ids by resource name (others get the next number).
        self.snapshot_ids: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if self.preview:
            return "", outputs
        resource_id = f"{1000 + len(_REGISTRY)}"
        if args.typ == "pulumi-python:dynamic:Resource":
            resource_id = self.snapshot_ids.get(args.name, resource_id)
            outputs["image_id"] = resource_id  # a Talos snapshot: its id is the image id
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        self.calls.append((args.token, dict(args.args)))
        if args.token == "hcloud:index/getNetwork:getNetwork":
            return {**self.existing_network, "labels": {}, "deleteProtection": False}
        raise AssertionError(f"unexpected invoke {args.token}")


_REGISTRY: list[Registered] = []


def _secret_paths(value: Any, path: str = "") -> set[str]:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return {path}
        found: set[str] = set()
        for key, inner in value.items():
            found |= _secret_paths(inner, f"{path}.{key}" if path else key)
        return found
    if isinstance(value, list):
        found = set()
        for index, inner in enumerate(value):
            found |= _secret_paths(inner, f"{path}[{index}]")
        return found
    return set()


def _reveal(value: Any) -> Any:
    """Plain values, with the engine's secret wrappers removed (secretness is kept apart)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _reveal(value["value"])
        return {key: _reveal(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_reveal(inner) for inner in value]
    return value


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps every registration, including which inputs were marked secret."""

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            registration = self.resources[response.urn]
            _REGISTRY.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    inputs=_reveal(rpc.deserialize_properties(request.object)),
                    parent=request.parent,
                    secret_paths=_secret_paths(raw),
                    urn=response.urn,
                    id=registration.id or "",
                    dependencies={
                        *request.dependencies,
                        *(
                            urn
                            for property_dependencies in request.propertyDependencies.values()
                            for urn in property_dependencies.urns
                        ),
                    },
                    additional_secret_outputs=set(request.additionalSecretOutputs),
                )
            )
        return response


@dataclass
class MockRuntime:
    """A fresh mock engine; ``run`` executes a program and returns its exports."""

    mocks: RecordingMocks
    resources: list[Registered] = field(default_factory=list)
    #: What the program logged with ``pulumi.log.warn``.
    warnings: list[str] = field(default_factory=list)

    def run(
        self,
        program: Callable[[], None] | Path,
        config: dict[str, Any] | None = None,
        secret_keys: list[str] | None = None,
    ) -> dict[str, Exported]:
        """Run ``program``; ``secret_keys`` are the config keys set with ``--secret``."""
        flat = {key: _engine_value(value) for key, value in (config or {}).items()}
        runtime_config.set_all_config(flat, secret_keys or [])
        self.warnings.clear()
        _REGISTRY.clear()  # a second run in one test records only its own registrations
        exports: dict[str, Exported] = {}

        def body() -> Any:
            if isinstance(program, Path):
                runpy.run_path(str(program), run_name="__main__")
            else:
                program()
            root = settings.get_root_resource()
            assert root is not None

            async def collect() -> None:
                for name, value in dict(root.outputs).items():  # type: ignore[attr-defined]
                    output = pulumi.Output.from_input(value)
                    exports[name] = Exported(
                        value=await output.future(),
                        is_secret=await output.is_secret(),
                        is_known=await output.is_known(),
                    )

            return asyncio.ensure_future(collect())

        try:
            pulumi.runtime.test(body)()
        finally:  # a failed run records what it registered too (tests assert on "nothing")
            self.resources[:] = _REGISTRY
        return exports

    def by_type(self, type_: str) -> list[Registered]:
        return [resource for resource in self.resources if resource.type == type_]

    def one(self, type_: str) -> Registered:
        found = self.by_type(type_)
        assert len(found) == 1, f"expected one {type_}, got {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registered:
        (found,) = [resource for resource in self.resources if resource.name == name]
        return found

    def parent_of(self, resource: Registered) -> Registered:
        for candidate in self.resources:
            if candidate.urn == resource.parent:
                return candidate
        raise AssertionError(f"{resource.name} has no registered parent ({resource.parent})")


def _engine_value(value: Any) -> str:
    """The engine hands objects to the program as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture
def pulumi_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockRuntime]:
    """A fresh event loop, root stack and mock monitor for one test (an update)."""
    yield from _mocked_runtime(monkeypatch, preview=False)


@pytest.fixture
def hetzner_api(tmp_path: Path) -> Iterator[HetznerEmulator]:
    """The Hetzner Cloud API emulator alone (no rescue system), token ``TEST_TOKEN``."""
    with HetznerEmulator(tmp_path / "authorized_keys") as emulator:
        yield emulator


@pytest.fixture
def pulumi_preview(
    monkeypatch: pytest.MonkeyPatch, hetzner_api: HetznerEmulator
) -> Iterator[MockRuntime]:
    """The same for a preview of a new stack: nothing exists yet, ids and outputs unknown.

    A preview with a token reads the server types from the API: here the emulator.
    """
    monkeypatch.setenv("HCLOUD_ENDPOINT", hetzner_api.endpoint)
    yield from _mocked_runtime(monkeypatch, preview=True)


@pytest.fixture
def kubernetes_api(tmp_path: Path) -> Iterator[KubernetesApiStandIn]:
    """The Kubernetes API stand-in, its ServiceAccount token and CA in one folder."""
    with KubernetesApiStandIn(tmp_path / "serviceaccount") as stand_in:
        yield stand_in


def _mocked_runtime(monkeypatch: pytest.MonkeyPatch, *, preview: bool) -> Iterator[MockRuntime]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _REGISTRY.clear()
    settings.ROOT.set(None)
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    if not preview:
        monkeypatch.delenv("HCLOUD_ENDPOINT", raising=False)
    mocks = RecordingMocks(preview=preview)
    pulumi.runtime.set_mocks(
        mocks,
        project="hcloud-talos-autoscaler",
        stack="dev",
        preview=preview,
        monitor=RecordingMonitor(mocks),
    )
    runtime = MockRuntime(mocks)
    monkeypatch.setattr(
        pulumi.log, "warn", lambda message, *_, **__: runtime.warnings.append(message)
    )
    yield runtime
    runtime_config.set_all_config({}, [])
    settings.ROOT.set(None)
    _REGISTRY.clear()
    loop.close()
    asyncio.set_event_loop(None)
