"""The cluster, reached as the Kubernetes provider would reach it, from a dynamic provider.

A dynamic provider runs in its own process and cannot borrow the Kubernetes provider's
client, so it reads the same kubeconfig: ``kubernetes:kubeconfig`` from the stack config
(a path or the kubeconfig itself; ``kubernetes:context`` picks a context), else the files
in ``KUBECONFIG`` (merged as kubectl merges them), else ``~/.kube/config``. Bearer tokens
(or token files), client certificates and CAs, inline or as files, are supported; ``exec``
and ``auth-provider`` plugins are not run, and say so.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.hetzner.access import ProviderConfig
from core.kubernetes.client import KubernetesApi


class KubeconfigError(Exception):
    """The cluster cannot be reached with this kubeconfig, and why."""


@dataclass(frozen=True)
class _Document:
    content: dict[str, Any]
    #: Relative file names in a kubeconfig are relative to the file's directory.
    base: Path
    source: str


@dataclass(frozen=True)
class KubernetesAccess:
    api: KubernetesApi
    #: Where the access came from, for messages ("~/.kube/config, context admin@c1").
    source: str


def kubernetes_access(
    config: ProviderConfig | None, environ: Mapping[str, str], home: Path | None = None
) -> KubernetesAccess:
    """A client for the kubeconfig's current (or configured) context; KubeconfigError if none."""
    values = config if config is not None else {}
    documents = _documents(values.get("kubernetes:kubeconfig"), environ, home or Path.home())
    merged = _merge(documents)
    context_name = values.get("kubernetes:context") or merged["current-context"]
    sources = ", ".join(document.source for document in documents)
    if not context_name:
        raise KubeconfigError(f"{sources} has no current context")
    context = _named(merged, "contexts", context_name, sources)
    cluster = _named(merged, "clusters", context.get("cluster", ""), sources)
    user = _named(merged, "users", context.get("user", ""), sources) if context.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith("https://"):
        raise KubeconfigError(
            f"context {context_name!r} ({sources}): server {server!r} is not https"
        )
    ssl_context = _tls(cluster, user, context_name)
    return KubernetesAccess(
        api=KubernetesApi(server, _token(user, context_name), ssl_context),
        source=f"{sources}, context {context_name}",
    )


def _documents(setting: Any, environ: Mapping[str, str], home: Path) -> list[_Document]:
    if setting:
        text = str(setting)
        try:
            inline = yaml.safe_load(text)
        except yaml.YAMLError:
            inline = None
        if isinstance(inline, dict):
            return [_Document(inline, Path.cwd(), "kubernetes:kubeconfig")]
        return [_read(Path(text).expanduser(), "kubernetes:kubeconfig")]
    if environ.get("KUBECONFIG"):
        paths = [Path(part) for part in environ["KUBECONFIG"].split(os.pathsep) if part]
        existing = [path for path in paths if path.is_file()]
        if not existing:
            raise KubeconfigError(
                f"none of the files in KUBECONFIG exists ({environ['KUBECONFIG']})"
            )
        return [_read(path, "KUBECONFIG") for path in existing]
    return [_read(home / ".kube" / "config", "~/.kube/config")]


def _read(path: Path, setting: str) -> _Document:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise KubeconfigError(f"cannot read {path} ({setting}): {error.strerror}") from None
    except yaml.YAMLError as error:
        raise KubeconfigError(f"{path} ({setting}) is not valid YAML: {error}") from None
    if not isinstance(content, dict):
        raise KubeconfigError(f"{path} ({setting}) is not a kubeconfig")
    return _Document(content, path.parent, str(path))


def _merge(documents: list[_Document]) -> dict[str, Any]:
    """kubectl's rule: the first file to name a cluster, user or context (or the current
    context) wins. Relative file names are resolved against their own file's directory."""
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": ""}
    for document in documents:
        for kind in ("clusters", "users", "contexts"):
            entry_key = kind[:-1]
            for entry in document.content.get(kind) or []:
                name = entry.get("name")
                if name and name not in merged[kind]:
                    merged[kind][name] = {"base": document.base, **(entry.get(entry_key) or {})}
        if not merged["current-context"]:
            merged["current-context"] = document.content.get("current-context") or ""
    return merged


def _named(merged: dict[str, Any], kind: str, name: str, sources: str) -> dict[str, Any]:
    found: dict[str, Any] | None = merged[kind].get(name)
    if found is None:
        raise KubeconfigError(f"{sources} has no {kind[:-1]} named {name!r}")
    return found


def _tls(cluster: dict[str, Any], user: dict[str, Any], context_name: str) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ca = _decoded(cluster["certificate-authority-data"], "certificate-authority-data")
        context = ssl.create_default_context(cadata=ca.decode("ascii", "replace"))
    elif cluster.get("certificate-authority"):
        context = ssl.create_default_context(
            cafile=str(_path(cluster["base"], cluster["certificate-authority"]))
        )
    else:
        context = ssl.create_default_context()
    certificate = _pem(user, "client-certificate")
    key = _pem(user, "client-key")
    if certificate and key:
        # ssl loads a client certificate only from files: a private directory, gone at once.
        with tempfile.TemporaryDirectory() as directory:
            certificate_file = Path(directory) / "client.crt"
            key_file = Path(directory) / "client.key"
            for path, data in ((certificate_file, certificate), (key_file, key)):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(certificate_file, key_file)
    elif certificate or key:
        raise KubeconfigError(
            f"context {context_name!r}: the user has a client certificate without its key "
            "(or the other way round)"
        )
    return context


def _pem(user: dict[str, Any], name: str) -> bytes | None:
    if user.get(f"{name}-data"):
        return _decoded(user[f"{name}-data"], f"{name}-data")
    if user.get(name):
        try:
            return _path(user["base"], user[name]).read_bytes()
        except OSError as error:
            raise KubeconfigError(f"cannot read {name} {user[name]}: {error.strerror}") from None
    return None


def _token(user: dict[str, Any], context_name: str) -> Callable[[], str | None]:
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            command = user[plugin].get("command") or user[plugin].get("name") or "?"
            raise KubeconfigError(
                f"context {context_name!r} logs in with an {plugin} plugin ({command}), which "
                "this program does not run"
            )
    if user.get("token"):
        token = str(user["token"])
        return lambda: token
    if user.get("tokenFile"):
        path = _path(user["base"], user["tokenFile"])
        return lambda: path.read_text().strip()  # read again: such files are rotated
    if user.get("username") or user.get("password"):
        raise KubeconfigError(
            f"context {context_name!r} logs in with a username and password, which this "
            "program does not support"
        )
    return lambda: None  # a client certificate, or anonymous


def _decoded(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"{field} is not valid base64") from None


def _path(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path
