"""How the program's dynamic providers reach the cluster: the stack's current access."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from core.kubernetes.kubeconfig import KubeconfigError, kubernetes_access
from core.kubernetes.provider_id_setter import ApiError

from tests.stand_ins.kubernetes_api import KubernetesApiStandIn


def node_names(access_config: dict[str, str], environ: dict[str, str], home: Path) -> list[str]:
    access = kubernetes_access(access_config, environ, home)
    return [node.name for node in access.api.nodes()]


@pytest.mark.parametrize(
    ("auth", "ca"),
    [("token", "data"), ("certificate", "data"), ("certificate", "file"), ("token", "file")],
)
def test_the_kubeconfig_named_in_the_stack_config_reaches_the_cluster(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path, auth: str, ca: str
) -> None:
    kubernetes_api.add_node("metal-1", internal_ip="192.168.1.20")
    path = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth=auth, ca=ca)  # type: ignore[arg-type]
    assert node_names({"kubernetes:kubeconfig": str(path)}, {}, tmp_path) == ["metal-1"]


def test_a_client_certificate_is_what_logs_in(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    """The stand-in refuses a request without token or certificate, so the test can fail."""
    path = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth="certificate")
    document = yaml.safe_load(path.read_text())
    document["users"][0]["user"] = {}
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ApiError, match="401 Unauthorized"):
        node_names({"kubernetes:kubeconfig": str(path)}, {}, tmp_path)


def test_the_kubeconfig_may_be_the_content_itself_and_the_context_chosen(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    kubernetes_api.add_node("n1")
    document = yaml.safe_load(kubernetes_api.write_kubeconfig(tmp_path / "k").read_text())
    document["contexts"].append({"name": "broken", "context": {"cluster": "nowhere", "user": "x"}})
    document["current-context"] = "broken"
    text = yaml.safe_dump(document)
    with pytest.raises(KubeconfigError, match="has no cluster named 'nowhere'"):
        node_names({"kubernetes:kubeconfig": text}, {}, tmp_path)
    chosen = {"kubernetes:kubeconfig": text, "kubernetes:context": "stand-in"}
    assert node_names(chosen, {}, tmp_path) == ["n1"]


def test_kubeconfig_files_are_merged_as_kubectl_merges_them(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    kubernetes_api.add_node("n1")
    full = yaml.safe_load(kubernetes_api.write_kubeconfig(tmp_path / "full").read_text())
    # The first file only names the current context; the second defines it. A stale
    # definition of the same user in a later file loses to the first one.
    (tmp_path / "first").write_text(yaml.safe_dump({"current-context": "stand-in"}))
    second = dict(full, **{"current-context": "other"})
    (tmp_path / "second").write_text(yaml.safe_dump(second))
    stale = {"users": [{"name": "stand-in-user", "user": {"token": "stale"}}]}
    (tmp_path / "third").write_text(yaml.safe_dump(stale))
    files = os.pathsep.join(
        str(tmp_path / name) for name in ("first", "missing", "second", "third")
    )
    assert node_names({}, {"KUBECONFIG": files}, tmp_path) == ["n1"]


def test_without_settings_the_home_kubeconfig_is_read(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    kubernetes_api.add_node("n1")
    (tmp_path / ".kube").mkdir()
    kubernetes_api.write_kubeconfig(tmp_path / ".kube" / "config", ca="file")
    access = kubernetes_access(None, {}, tmp_path)
    assert [node.name for node in access.api.nodes()] == ["n1"]
    assert access.source == f"{tmp_path / '.kube' / 'config'}, context stand-in"


def test_plugins_are_refused_with_the_reason(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    path = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig", auth="exec")
    with pytest.raises(KubeconfigError) as caught:
        kubernetes_access({"kubernetes:kubeconfig": str(path)}, {}, tmp_path)
    assert str(caught.value) == (
        "context 'stand-in' logs in with an exec plugin (kubelogin), which this program does "
        "not run"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "cannot read {home}/.kube/config (~/.kube/config): No such file or directory"),
        ({"KUBECONFIG": "/nonexistent/a"}, "none of the files in KUBECONFIG exists"),
    ],
)
def test_a_missing_kubeconfig_says_where_it_looked(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(KubeconfigError) as caught:
        kubernetes_access({}, environ, tmp_path)
    assert message.format(home=tmp_path) in str(caught.value)


def test_a_token_file_is_read_for_every_request_and_its_loss_is_an_api_error(
    kubernetes_api: KubernetesApiStandIn, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(kubernetes_api.token)
    path = kubernetes_api.write_kubeconfig(tmp_path / "kubeconfig")
    document = yaml.safe_load(path.read_text())
    document["users"][0]["user"] = {"tokenFile": "token"}  # relative to the kubeconfig
    path.write_text(yaml.safe_dump(document))
    api = kubernetes_access({"kubernetes:kubeconfig": str(path)}, {}, tmp_path).api
    assert api.nodes() == []
    token.unlink()
    with pytest.raises(ApiError, match="cannot read the token"):
        api.nodes()
