"""A Helm chart repository on loopback serving the upstream ``cluster-autoscaler`` chart.

What an air-gapped cluster's mirror serves (``autoscaler.chartRepository``): an
``index.yaml`` and the packaged chart, made here from the reference copy of chart 9.56.0
(``../shared/reference/charts/cluster-autoscaler``) the way ``helm package`` and
``helm repo index`` lay them out.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import tarfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import yaml

from tests.conftest import SHARED_REFERENCE
from tests.stand_ins.loopback import Answer, LoopbackServer, answering

CHART = SHARED_REFERENCE / "charts" / "cluster-autoscaler"


def packaged(chart: Path) -> tuple[dict[str, object], bytes]:
    """The chart's metadata and its ``<name>-<version>.tgz`` (files under ``<name>/``)."""
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(chart.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=f"{metadata['name']}/{path.relative_to(chart)}")
    return metadata, buffer.getvalue()


class ChartRepository(LoopbackServer):
    """``url`` is the repository; ``downloads`` lists the paths Helm fetched."""

    def __init__(self, chart: Path = CHART) -> None:
        metadata, self.archive = packaged(chart)
        self.file = f"{metadata['name']}-{metadata['version']}.tgz"
        self.metadata = metadata
        self.downloads: list[str] = []
        super().__init__(answering(self._answer, ("GET",)))

    @property
    def url(self) -> str:
        return self.base_url

    def index(self) -> bytes:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        entry = {
            **self.metadata,
            "created": now,
            "digest": hashlib.sha256(self.archive).hexdigest(),
            "urls": [f"{self.url}/{self.file}"],
        }
        document = {
            "apiVersion": "v1",
            "entries": {self.metadata["name"]: [entry]},
            "generated": now,
        }
        return yaml.safe_dump(document).encode()

    def _answer(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> Answer:
        path = request.path.split("?", 1)[0]
        self.downloads.append(path)
        if path == "/index.yaml":
            return 200, "application/x-yaml", self.index()
        if path == f"/{self.file}":
            return 200, "application/gzip", self.archive
        return 404, "text/plain", b"not found"
