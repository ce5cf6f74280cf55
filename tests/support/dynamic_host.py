"""Pulumi's dynamic-provider host, started and driven over gRPC as the engine does.

What ``pulumi up`` and ``pulumi destroy`` run: a fresh ``python -m pulumi.dynamic`` in the
project directory (as Pulumi's plugin shim starts it) unpickles the provider the program
serialized into the resource's inputs, and the engine calls Configure, Create and Delete.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


class DynamicHost:
    """The host process and an engine's gRPC stub to it; ``stderr`` once it has stopped.

    Environment variables starting with ``dropped`` are not inherited (never the test's
    ``PYTHONPATH``: the host finds the provider's module the way the engine's host does).
    """

    def __init__(self, *, dropped: tuple[str, ...] = ("PYTHONPATH",)) -> None:
        self._environment = {
            key: value for key, value in os.environ.items() if not key.startswith(dropped)
        }
        self.stderr = ""

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            cwd=REPO,
            env=self._environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.engine = provider_pb2_grpc.ResourceProviderStub(self._channel)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._channel.close()
        self._process.kill()
        self._process.wait(timeout=10)
        assert self._process.stderr is not None
        self.stderr = self._process.stderr.read().decode()

    def configure(self, config: Mapping[str, Any] | None = None) -> None:
        """The stack config, as the engine hands it to every provider."""
        arguments = asyncio.run(rpc.serialize_properties(dict(config or {}), {}))
        self.engine.Configure(provider_pb2.ConfigureRequest(acceptSecrets=True, args=arguments))

    def create(
        self, urn: str, inputs: Mapping[str, Any], provider: Any
    ) -> provider_pb2.CreateResponse:
        """Create with ``inputs`` and the pickled ``provider``, as the program registers it."""
        properties = asyncio.run(
            rpc.serialize_properties({**inputs, "__provider": serialize_provider(provider)}, {})
        )
        response: provider_pb2.CreateResponse = self.engine.Create(
            provider_pb2.CreateRequest(urn=urn, properties=properties)
        )
        return response

    def delete(self, created: provider_pb2.CreateResponse, urn: str = "urn:x") -> None:
        """Delete what ``create`` made, with the outputs it answered."""
        self.engine.Delete(
            provider_pb2.DeleteRequest(id=created.id, urn=urn, properties=created.properties)
        )
