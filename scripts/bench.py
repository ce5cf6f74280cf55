"""Benchmarks: the speed and size figures of this project, printed, never asserted.

    make bench                                   # or: .venv/bin/python scripts/bench.py
    .venv/bin/python scripts/bench.py --image-mib 1024

1. The offline render of each shipped stack (best of five runs), and the program's
   evaluation under Pulumi's mocks at 1, 10 and 100 pools against its floor, a program that
   imports the same libraries (and the same lazily loaded submodules) and registers nothing:
   each in a fresh interpreter, imports included, bytecode cached, best of five; the ratio
   per number of pools, the cost of each further pool, and the load average around each.
2. Sizes against their limits: each pool's user data (Hetzner: 32 KiB) and the
   cluster config (inline env var up to 128 KiB, then a mounted file up to the
   1 MiB Secret limit) as the number of pools like the dev stack's grows.
3. One image build against the local stand-ins (Hetzner API emulator, Image
   Factory, a real sshd on loopback, a file as the disk) with an image of
   realistic size: time per step, the throughput of the streamed write, the
   API requests it makes and the longest wait between two of them (actions run
   for assumed durations, scaled down, as do the build's poll intervals).
4. The write step (sparse onto a discarded disk, xz -T0, with hashing and the read-back)
   against the plain ``curl | xz -d | dd`` pipeline, on the same bytes of a Talos-shaped
   image (mostly zeros), in one run: the time ratio and the bytes each put on the disk.
5. The bound of every wait, and the longest possible build.
   Only loopback is contacted.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.autoscaler import values  # noqa: E402
from core.config import (  # noqa: E402
    WRITE_TIMEOUT_MAX_MINUTES,
    WRITE_TIMEOUT_MINUTES,
    load_stack_file,
    parse_stack_config,
)
from core.hetzner.api import ACTION_POLL, REQUEST_TIMEOUT, ApiClient  # noqa: E402
from core.hetzner.facts import Architecture  # noqa: E402
from core.image_builder import rescue  # noqa: E402
from core.image_builder.builder_resources import STALE_AFTER  # noqa: E402
from core.image_builder.pipeline import BuildRequest, Limits, build_image  # noqa: E402
from core.image_builder.schematic import schematic_id_for  # noqa: E402
from core.plan import StackPlan, plan_stack  # noqa: E402
from core.render import render_stack  # noqa: E402
from core.waits import format_seconds, looks_within  # noqa: E402

from tests.stand_ins.hetzner_api import TEST_TOKEN, HetznerEmulator  # noqa: E402
from tests.stand_ins.image_factory import (  # noqa: E402
    ImageFactory,
    generated_raw_image,
    talos_shaped_raw_image,
)
from tests.stand_ins.rescue_sshd import RescueSshd, blank_disk  # noqa: E402

MIB = 1024 * 1024


def best_of(runs: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def bench_render(stacks: list[str]) -> None:
    print("offline render (best of 5)")
    for stack in stacks:
        seconds = best_of(5, functools.partial(render_stack, REPO, stack))
        print(f"  {stack:<6} {seconds * 1000:8.1f} ms")


def plan_of(sections: dict[str, Any], token: Any) -> StackPlan:
    """The stack's plan, as the program makes it."""
    return plan_stack(parse_stack_config(sections, token, REPO, require_token=False))


def bench_sizes(stacks: list[str]) -> None:
    print("\nuser data per pool (Hetzner limit 32768 bytes)")
    for stack in stacks:
        plan = plan_of(*load_stack_file(REPO, stack))
        for pool, config in plan.worker_configs(plan.network.subnet).items():
            print(f"  {stack:<6} {pool:<16} {config.user_data.size:>6} bytes")

    print("\ncluster config by number of pools like the dev stack's")
    print(
        f"  (env var up to {values.ENV_STRING_LIMIT_BYTES} bytes with the name, then a mounted file"
    )
    print(f"   up to {values.SECRET_LIMIT_BYTES} bytes, then refused)")
    sections, token = load_stack_file(REPO, "dev")
    template = sections["autoscaler"]["nodeGroups"][0]
    for pools in (1, 10, 40, 80, 160, 320, 640):
        grown = copy.deepcopy(sections)
        # A /16 subnet, so that every pool's maxSize fits (a /24 holds 253 servers).
        grown["network"] = {**grown.get("network", {}), "subnet": "10.100.0.0/16"}
        grown["autoscaler"]["nodeGroups"] = [
            {**template, "name": f"{template['name']}-{index}"} for index in range(pools)
        ]
        plan = plan_of(grown, token)
        subnet = plan.network.subnet
        image_ids: dict[Architecture, str] = {
            snapshot.architecture: "123456789" for snapshot in plan.image.snapshots
        }
        try:
            secret = plan.talos_config(plan.worker_configs(subnet), image_ids, subnet)
            value, as_file = secret.value, secret.as_file
        except ValueError:
            print(f"  {pools:>4} pools: refused (above the Secret limit)")
            continue
        where = "mounted file" if as_file else "env var"
        print(f"  {pools:>4} pools: {len(value):>8} bytes as {where}")


#: Libraries the program's evaluation needs: the floor imports them, with every submodule the
#: program loaded (``pulumi_kubernetes`` and ``hcloud`` load theirs lazily, and they dominate
#: start-up). Not paramiko: only a build (the snapshot's create) uses it.
FLOOR_LIBRARIES = ("pulumi", "pulumi_hcloud", "pulumi_kubernetes", "hcloud", "pydantic", "yaml")

#: A fresh interpreter that times itself from its first line: imports, Pulumi's mock engine,
#: then ``__main__.py`` (``program``) or nothing (``floor``: the modules of FLOOR_LIBRARIES the
#: program loaded, and no resource). argv: mode, config JSON file, modules JSON file,
#: repository. ``program`` writes the modules it loaded to the modules file.
PROGRAM_CHILD = """
import time
started, cpu_started = time.perf_counter(), time.process_time()
import importlib, json, runpy, sys
mode, config_file, modules_file, repo = sys.argv[1:5]
sys.path.insert(0, repo)
import pulumi
from pulumi.runtime import config as runtime_config
if mode == "floor":
    for name in json.loads(open(modules_file).read()):
        importlib.import_module(name)

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return "1001", {**args.inputs, "image_id": "1001"}

    def call(self, args):
        return {}

pulumi.runtime.set_mocks(Mocks(), project="hcloud-talos-autoscaler", stack="bench", preview=False)
runtime_config.set_all_config(json.loads(open(config_file).read()), ["hcloud:token"])

def program():
    if mode == "program":
        runpy.run_path(f"{repo}/__main__.py", run_name="__main__")

pulumi.runtime.test(program)()
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
if mode == "program":
    libraries = set(json.loads(sys.argv[5]))
    loaded = [name for name in sys.modules if name.split(".")[0] in libraries]
    open(modules_file, "w").write(json.dumps(loaded))
print(elapsed, cpu)
"""


def pools_config(pools: int) -> dict[str, str]:
    """The dev stack's config, as the engine hands it over, with ``pools`` pools like its one
    (distinct names, regions in turn) in a /16 subnet that holds every pool's maxSize."""
    flat = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    template = flat["hcloud-talos-autoscaler:autoscaler"]["nodeGroups"][0]
    regions = ("fsn1", "nbg1", "hel1")
    flat["hcloud-talos-autoscaler:autoscaler"]["nodeGroups"] = [
        {**template, "name": f"pool-{index}", "region": regions[index % len(regions)]}
        for index in range(pools)
    ]
    flat["hcloud-talos-autoscaler:network"]["subnet"] = "10.100.0.0/16"
    flat["hcloud:token"] = TEST_TOKEN
    return {key: v if isinstance(v, str) else json.dumps(v) for key, v in flat.items()}


def evaluation_seconds(
    mode: str, config_file: Path, modules_file: Path, bytecode: Path
) -> tuple[float, float]:
    """One evaluation in a fresh interpreter (this one's) as it timed itself, wall clock and
    CPU time; every module's bytecode is cached in ``bytecode`` (whatever
    PYTHONDONTWRITEBYTECODE says)."""
    environment = {
        **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPYCACHEPREFIX": str(bytecode),
    }
    arguments = [mode, str(config_file), str(modules_file), str(REPO), json.dumps(FLOOR_LIBRARIES)]
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM_CHILD, *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} evaluation failed:\n{done.stderr}")
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def load_average() -> str:
    return "load average " + " ".join(f"{load:.2f}" for load in os.getloadavg())


def bench_program(pool_counts: tuple[int, ...] = (1, 10, 100), runs: int = 5) -> None:
    """The program under Pulumi's mocks at each number of pools against its floor, a program
    that imports the same libraries and registers nothing: what a preview waits for before
    the engine works. Each run a fresh interpreter; an untimed run first caches bytecode."""
    print(
        f"\nprogram evaluation against its floor (fresh interpreter, best of {runs}, "
        "target: at most 1.25x; CPU time beside, less disturbed by a busy machine)"
    )
    program: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        config_file = Path(scratch) / "config.json"
        modules_file = Path(scratch) / "modules.json"
        evaluate = functools.partial(
            evaluation_seconds,
            config_file=config_file,
            modules_file=modules_file,
            bytecode=Path(scratch) / "bytecode",
        )
        for pools in pool_counts:
            config_file.write_text(json.dumps(pools_config(pools)))
            before = load_average()
            for mode in ("program", "floor"):  # untimed: caches bytecode, lists the modules
                evaluate(mode)
            timings: dict[str, list[tuple[float, float]]] = {"program": [], "floor": []}
            for mode in ["program", "floor"] * runs:
                timings[mode].append(evaluate(mode))
            best = {
                mode: (min(wall for wall, _ in found), min(cpu for _, cpu in found))
                for mode, found in timings.items()
            }
            program[pools], floor = best["program"], best["floor"]
            print(
                f"  {pools:>3} pools: program {program[pools][0] * 1000:4.0f} ms, floor "
                f"{floor[0] * 1000:4.0f} ms: {program[pools][0] / floor[0]:.2f}x (CPU time "
                f"{program[pools][1] * 1000:4.0f} ms against {floor[1] * 1000:4.0f} ms: "
                f"{program[pools][1] / floor[1]:.2f}x; {before}, after: {load_average()})"
            )
    fewest, most = min(pool_counts), max(pool_counts)
    if most > fewest:
        wall, cpu = ((program[most][i] - program[fewest][i]) / (most - fewest) for i in (0, 1))
        print(f"  each pool beyond the first costs {wall * 1000:.1f} ms ({cpu * 1000:.1f} ms CPU)")


#: Assumed durations of Hetzner actions (seconds), for counting polls; the emulation
#: runs them, and the build's poll intervals, 1/TIME_SCALE as long.
ASSUMED_ACTION_SECONDS = {
    "create_server": 15.0,
    "enable_rescue": 5.0,
    "start_server": 20.0,
    "stop_server": 5.0,
    "create_image": 300.0,
}
TIME_SCALE = 100.0


def request_kind(method: str, path: str) -> str:
    parts = path.removeprefix("/v1/").split("/")
    if parts[0] == "actions":
        return "action polls"
    if method == "GET" and len(parts) == 1:
        return f"lists of {parts[0]}"
    if method == "GET":
        return f"reads of one {parts[0][:-1]}"
    return f"{method} {parts[0]}" + (f" {parts[-1]}" if len(parts) > 2 else "")


def bench_image_build(image_mib: int) -> None:
    print(f"\nimage build against the local stand-ins ({image_mib} MiB raw image)")
    raw_image = generated_raw_image(image_mib * MIB)
    started = time.perf_counter()
    factory = ImageFactory(raw_image)
    print(
        f"  image {len(raw_image) // MIB} MiB raw, {len(factory.compressed) / MIB:.1f} MiB xz "
        f"(compressed in {time.perf_counter() - started:.1f} s, not part of the build)"
    )
    print(
        "  Hetzner actions take as long as assumed here, divided by "
        f"{TIME_SCALE:.0f} (so do the build's poll intervals): "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in ASSUMED_ACTION_SECONDS.items())
    )
    schematic = schematic_id_for(["siderolabs/qemu-guest-agent"])
    factory.known_schematics.add(schematic)
    write_window: list[float] = []

    def mark_write(line: str) -> None:
        if "writing" in line or "disk holds the image" in line:
            write_window.append(time.monotonic())

    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, ExitStack() as running:
        sshd = RescueSshd(Path(scratch) / "sshd").start()
        running.callback(sshd.stop)
        hetzner = HetznerEmulator(sshd.authorized_keys).start()
        hetzner.action_seconds = {
            name: seconds / TIME_SCALE for name, seconds in ASSUMED_ACTION_SECONDS.items()
        }
        running.callback(hetzner.stop)
        running.callback(factory.start().stop)
        disk = blank_disk(Path(scratch) / "disk.img", (image_mib + 1) * MIB)
        client = ApiClient(
            TEST_TOKEN, hetzner.endpoint, poll=lambda tries: ACTION_POLL(tries) / TIME_SCALE
        )
        result = build_image(
            client,
            BuildRequest(
                talos_version="v1.11.6",
                schematic_id=schematic,
                architecture="amd64",
                location="fsn1",
                server_type="cx23",
                factory_url=factory.url,
                ssh_port=sshd.port,
                target_device=str(disk),
            ),
            log=mark_write,
        )
        with disk.open("rb") as written_disk:
            written = hashlib.sha256(written_disk.read(len(raw_image))).hexdigest()
        leftovers = sum(map(len, hetzner.builder_leftovers().values()))
        requests = list(hetzner.state.requests)
        times = list(hetzner.state.request_times)
    for step, seconds in result.timings.items():
        print(f"  {step:<28} {seconds:8.3f} s")
    throughput = image_mib / result.timings["write image"]
    print(f"  stream throughput            {throughput:8.1f} MiB/s raw")
    intact = written == hashlib.sha256(raw_image).hexdigest()
    print(f"  disk equals the image: {intact}; builder servers, keys, snapshots left: {leftovers}")

    kinds: dict[str, int] = {}
    for method, path in requests:
        kinds[request_kind(method, path)] = kinds.get(request_kind(method, path), 0) + 1
    print(f"\nAPI requests per build: {len(requests)}")
    for kind, count in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"  {count:>4}  {kind}")
    write_start, write_end = write_window[0], write_window[-1]
    gaps = [
        later - earlier
        for earlier, later in itertools.pairwise(times)
        if later <= write_start or earlier >= write_end
    ]
    print(
        f"longest wait between two API requests (outside the write): "
        f"{max(gaps) * TIME_SCALE:.1f} s at Hetzner's pace"
    )
    print("action polls for a snapshot taking 5 / 20 / 40 minutes (backed off; the old 2 s poll):")
    for minutes in (5, 20, 40):
        print(
            f"  {minutes:>2} min: {looks_within(ACTION_POLL, minutes * 60):>3} polls "
            f"(constant 2 s: {minutes * 30})"
        )


def bench_bounds() -> None:
    limits = Limits()
    slowest = Limits(write=WRITE_TIMEOUT_MAX_MINUTES * 60.0)
    print("\nbounds of a build (each wait gives up after this, naming its step)")
    bounds = {
        "each API request (6 tries, 10 s connect + 30 s read)": 6 * sum(REQUEST_TIMEOUT) + 31,
        "each action (create, rescue, power on/off)": limits.action,
        "ssh to the rescue system": limits.ssh,
        "download with near-zero throughput": limits.write_stall,
        f"write and read-back (image.writeTimeout {WRITE_TIMEOUT_MINUTES} min)": limits.write,
        "server off after power-off": limits.power_off,
        "snapshot": limits.snapshot,
        "teardown while a snapshot keeps the server locked": limits.teardown,
    }
    for what, seconds in bounds.items():
        print(f"  {what:<58} {format_seconds(seconds):>8}")
    print(
        f"  longest possible build: {format_seconds(limits.longest_build())} "
        f"({format_seconds(slowest.longest_build())} with writeTimeout "
        f"{WRITE_TIMEOUT_MAX_MINUTES}); builders older than {STALE_AFTER} are leftovers"
    )


def bench_write_step(image_mib: int, rounds: int = 2) -> None:
    """Our write step against the plain pipeline on the same served bytes, alternating."""
    raw_image = talos_shaped_raw_image(image_mib * MIB, data_per_8mib=2 * MIB)
    data = sum(
        1 for offset in range(0, len(raw_image), MIB) if any(raw_image[offset : offset + MIB])
    )
    factory = ImageFactory(raw_image)
    schematic = schematic_id_for(["siderolabs/qemu-guest-agent"])
    factory.known_schematics.add(schematic)
    print(
        f"\nwrite step against the plain pipeline ({image_mib} MiB Talos-shaped raw image, "
        f"{data} MiB blocks hold data, {len(factory.compressed) / MIB:.1f} MiB xz; "
        f"best of {rounds})"
    )
    url = f"{factory.url}/image/{schematic}/v1.11.6/hcloud-amd64.raw.xz"
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, ExitStack() as running:
        sshd = RescueSshd(Path(scratch) / "sshd").start()
        running.callback(sshd.stop)
        running.callback(factory.start().stop)
        sshd.discarding_disk()
        key, public = rescue.ephemeral_key()
        sshd.authorized_keys.write_text(public + "\n")
        ssh = rescue.connect("127.0.0.1", sshd.port, key, 30, lambda _: 0.2)
        running.callback(ssh.close)
        disk = Path(scratch) / "disk.img"
        timings: dict[str, list[float]] = {"plain": [], "sparse": [], "ours": []}
        on_disk: dict[str, int] = {}
        plain = (
            f"bash -c 'set -o pipefail; curl -fsSL {url} | xz -d "
            f"| dd of={disk} bs=4M conv=notrunc,fsync status=none'"
        )
        sparse = (
            f"bash -c 'set -o pipefail; curl -fsSL {url} | xz -d -T0 "
            f"| dd of={disk} bs=1M iflag=fullblock conv=notrunc,fsync,sparse status=none'"
        )
        for _ in range(rounds):
            for name in ("plain", "sparse", "ours"):
                disk.unlink(missing_ok=True)
                subprocess.run(
                    ["truncate", "-s", str((image_mib + 1) * MIB), str(disk)], check=True
                )
                started = time.perf_counter()
                if name != "ours":
                    command = plain if name == "plain" else sparse
                    rescue.run(ssh, command, seconds=1800, what=f"the {name} pipeline")
                else:
                    written = rescue.write_image(
                        ssh, url, str(disk), stall_seconds=60, seconds=1800
                    )
                    assert written.sparse and written.sha256 == written.on_disk_sha256
                timings[name].append(time.perf_counter() - started)
                on_disk[name] = disk.stat().st_blocks * 512
                with disk.open("rb") as written_disk:
                    intact = written_disk.read(len(raw_image)) == raw_image
                assert intact, f"the {name} write did not put the image on the disk"
    labels = {
        "plain": "plain curl | xz -d | dd bs=4M",
        "sparse": "the same, xz -T0 and dd conv=sparse",
        "ours": "write step (sparse + hash + read-back)",
    }
    best = {name: min(seconds) for name, seconds in timings.items()}
    for name, label in labels.items():
        print(
            f"  {label:<40} {best[name]:7.2f} s {image_mib / best[name]:7.1f} MiB/s "
            f"{on_disk[name] / MIB:8.1f} MiB written to the disk"
        )
    print(
        f"  ratio, plain time / write-step time: {best['plain'] / best['ours']:.2f}x "
        f"(plain / sparse pipeline alone: {best['plain'] / best['sparse']:.2f}x); bytes on the "
        f"disk: {on_disk['ours'] / max(on_disk['plain'], 1):.2f} of the plain write's"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-mib", type=int, default=512, help="raw image size (MiB)")
    parser.add_argument("--stacks", nargs="+", default=["dev", "prod"])
    args = parser.parse_args()
    bench_render(args.stacks)
    bench_program()
    bench_sizes(args.stacks)
    bench_image_build(args.image_mib)
    bench_write_step(args.image_mib)
    bench_bounds()


if __name__ == "__main__":
    main()
