"""The builder CLI: a build and a cleanup printing JSON; on bad input and odd endpoints a clean
message, exit 2 or 1, no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from cli.image_builder import main
from core.config import ConfigError
from core.image_builder.builder_resources import BUILDER_LABEL

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator
from tests.stand_ins.image_factory import ImageFactory
from tests.stand_ins.loopback import LoopbackServer
from tests.support.image_build import SCHEMATIC, build_arguments, cli_env, run_cli
from tests.support.stack_config import changed, parse

BUILD = ["build", "--talos-version", "v1.11.6", "--arch", "amd64", "--location", "fsn1"]


class NotAnApi(LoopbackServer):
    """Answers every request with 200 and an HTML page (a proxy or a wrong URL)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _page(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b"<html>hello</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _page

        super().__init__(Handler)


@pytest.fixture
def not_an_api() -> Iterator[str]:
    server = NotAnApi().start()
    yield server.base_url
    server.stop()


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    *,
    endpoint: str,
    token: str = TEST_TOKEN,
) -> tuple[int, str, str]:
    monkeypatch.setenv("HCLOUD_TOKEN", token)
    monkeypatch.setenv("HCLOUD_ENDPOINT", endpoint)
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_closed_port_is_a_runtime_failure_with_the_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"
    code, out, err = run(capsys, monkeypatch, ["cleanup"], endpoint=endpoint)
    assert code == 1 and out == ""
    assert f"error: cannot reach the Hetzner API at {endpoint} (connection failed)" in err
    assert "Traceback" not in err
    code, _, err = run(
        capsys, monkeypatch, [*BUILD, "--schematic-id", SCHEMATIC], endpoint=endpoint
    )
    assert code == 1
    assert "image build failed at step 'remove stale builders': cannot reach the Hetzner API" in err
    # Nothing was created before the API failed: no leak to report, no cleanup to run.
    assert "teardown" not in err and "billed" not in err


def test_a_refused_token_is_bad_input(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    hetzner_api: HetznerEmulator,
) -> None:
    # Not a word or hex digits: the output names builders by random hex run ids.
    token = "refused-token-qx"
    for args in (["cleanup"], [*BUILD, "--schematic-id", SCHEMATIC]):
        code, _, err = run(capsys, monkeypatch, args, endpoint=hetzner_api.endpoint, token=token)
        assert code == 2, err
        assert (
            f"the Hetzner API at {hetzner_api.endpoint} refused HCLOUD_TOKEN (unauthorized)" in err
        )
        assert token not in err
        assert "Traceback" not in err
    assert hetzner_api.state.servers == {} and hetzner_api.state.ssh_keys == {}


def test_a_non_json_answer_names_the_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, not_an_api: str
) -> None:
    code, _, err = run(capsys, monkeypatch, ["cleanup"], endpoint=f"{not_an_api}/v1")
    assert code == 1
    assert f"the Hetzner API at {not_an_api}/v1 answered 200" in err
    assert "is HCLOUD_ENDPOINT the Hetzner Cloud API?" in err


def test_bad_arguments_are_listed_before_any_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"  # never contacted
    args = [
        "build",
        "--talos-version",
        "1.11",
        "--arch",
        "amd64",
        "--location",
        "mars",
        "--label",
        "noequals",
        "--label",
        "bad key=x",
        "--label",
        "os=windows",
        "--schematic-id",
        "XYZ",
    ]
    code, out, err = run(capsys, monkeypatch, args, endpoint=endpoint)
    assert code == 2 and out == ""
    for expected in (
        "--talos-version: '1.11' is not a Talos version",
        "--location: 'mars' is not a Hetzner Cloud location",
        "--label: 'noequals' is not key=value (e.g. --label team=platform)",
        "--label: label key 'bad key' is not a valid Hetzner label key",
        "--label: os identify the snapshot",
        "--schematic-id: 'XYZ' is not an Image Factory schematic id (64 lower-case hex",
    ):
        assert expected in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("arguments", "key", "value"),
    [
        (["--talos-version", "v1.5.0"], "talos.version", "v1.5.0"),
        (["--talos-version", "1.11"], "talos.version", "1.11"),
        (["--location", "mars"], "image.location", "mars"),
        (["--location", "fsn1", "--location", "fsn1"], "image.location", ["fsn1", "fsn1"]),
        (["--schematic-id", "XYZ"], "talos.schematicId", "XYZ"),
        (["--factory-url", "factory.talos.dev"], "talos.imageFactoryUrl", "factory.talos.dev"),
        (["--label", "os=windows"], "image.labels", {"os": "windows"}),
    ],
)
def test_the_cli_refuses_what_the_stack_config_refuses_with_the_same_message(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    key: str,
    value: Any,
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(changed(key, value))
    (config_message,) = [problem.message for problem in caught.value.problems if problem.key == key]
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"  # never contacted
    base = ["build", "--talos-version", "v1.11.6", "--arch", "amd64", "--location", "nbg1"]
    code, out, err = run(capsys, monkeypatch, [*base, *arguments], endpoint=endpoint)
    assert code == 2 and out == ""
    assert f"  - {arguments[0]}: {config_message}\n" in err, err


def test_a_builder_type_of_the_other_architecture_is_refused_as_the_stack_config_refuses_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(changed("image.builderServerTypes", {"amd64": ["cx23", "cax21"]}))
    (config_message,) = [
        problem.message
        for problem in caught.value.problems
        if problem.key == "image.builderServerTypes"
    ]
    assert config_message.startswith("amd64: ")
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"  # never contacted
    args = ["build", "--talos-version", "v1.11.6", "--arch", "amd64", "--location", "nbg1"]
    args += ["--server-type", "cx23", "--server-type", "CAX21"]
    code, out, err = run(capsys, monkeypatch, args, endpoint=endpoint)
    assert code == 2 and out == ""
    assert f"  - --server-type: {config_message.removeprefix('amd64: ')}\n" in err, err


def test_the_cli_takes_a_location_and_factory_url_as_the_stack_config_holds_them(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    hetzner_api: HetznerEmulator,
) -> None:
    factory = f"http://127.0.0.1:{closed_port()}"
    args = [*BUILD[:-1], "FSN1", "--extension", "siderolabs/zfs", "--factory-url", f"{factory}/"]
    code, _, err = run(capsys, monkeypatch, args, endpoint=hetzner_api.endpoint)
    assert code == 1, err  # past the argument checks: the factory is not there
    assert f"cannot reach the Image Factory at {factory} (" in err


def test_an_unreachable_image_factory_is_a_runtime_failure(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    hetzner_api: HetznerEmulator,
    not_an_api: str,
) -> None:
    factory = f"http://127.0.0.1:{closed_port()}"
    args = [*BUILD, "--extension", "siderolabs/zfs", "--factory-url", factory]
    code, _, err = run(capsys, monkeypatch, args, endpoint=hetzner_api.endpoint)
    assert code == 1
    assert f"cannot reach the Image Factory at {factory} (" in err
    assert "check --factory-url" in err and "Traceback" not in err
    args = [*BUILD, "--extension", "siderolabs/zfs", "--factory-url", not_an_api]
    code, _, err = run(capsys, monkeypatch, args, endpoint=hetzner_api.endpoint)
    assert code == 1
    assert f"the Image Factory at {not_an_api} did not answer with a schematic id" in err
    assert hetzner_api.state.servers == {}


def test_debug_shows_the_traceback_of_a_runtime_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"
    code, _, err = run(capsys, monkeypatch, ["cleanup"], endpoint=endpoint)
    assert code == 1 and "Traceback" not in err and "--debug shows the traceback" in err
    code, _, err = run(capsys, monkeypatch, ["--debug", "cleanup"], endpoint=endpoint)
    assert code == 1 and "Traceback (most recent call last)" in err


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=cli_env(None, **env))


def test_cli_build_prints_one_json_object_and_cleanup_removes_leaks(
    hetzner: HetznerEmulator, factory: ImageFactory, rescue_env: dict[str, str]
) -> None:
    hetzner.default_action_seconds = 0
    env = {"HCLOUD_TOKEN": TEST_TOKEN, "HCLOUD_ENDPOINT": hetzner.endpoint, **rescue_env}
    result = cli(
        *build_arguments(
            factory.url, "--extension", "siderolabs/qemu-guest-agent", "--label", "team=platform"
        ),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert int(output["image_id"]) in hetzner.state.images
    assert output["architecture"] == "amd64"
    assert output["labels"]["team"] == "platform"
    assert output["disk_size"] == 40.0
    assert "write image" in output["timings"]
    assert TEST_TOKEN not in result.stderr + result.stdout

    # A leaked builder (as after a killed process) is found by label and removed.
    leaked = hetzner.add_server(
        "talos-builder-x", {BUILDER_LABEL: "abc"}, created="2026-11-24T10:00:00+00:00"
    )
    cleaned = cli("cleanup", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout) == {"removed": [f"server {leaked} (talos-builder-x)"]}
    assert hetzner.state.servers == {}


def test_cli_needs_a_token() -> None:
    result = cli("cleanup", env={})
    assert result.returncode == 2
    assert "HCLOUD_TOKEN is not set" in result.stderr


def test_cli_failure_names_the_step(
    hetzner: HetznerEmulator, factory: ImageFactory, rescue_env: dict[str, str]
) -> None:
    hetzner.faults.server_create_status = 503
    result = cli(
        *build_arguments(factory.url, "--schematic-id", SCHEMATIC),
        env={"HCLOUD_TOKEN": TEST_TOKEN, "HCLOUD_ENDPOINT": hetzner.endpoint, **rescue_env},
    )
    assert result.returncode == 1
    assert "image build failed at step 'create server'" in result.stderr
    assert result.stdout == ""
