"""Property: whatever a user does to the shipped stacks and worker configs, render and the
config model answer with exit 0 or a clean error naming the key, never a traceback, in < 2 s.

Hypothesis mutates the shipped files (values of other types, deleted keys, random keys,
huge and unicode values, raw bytes); derandomized so CI runs the same examples each time.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cli.render import main as render_main
from core.config import ConfigError, parse_stack_config, sections_from_flat_config
from core.talos.documents import dump_documents

from tests.conftest import REPO
from tests.stand_ins.hetzner_api import TEST_TOKEN

FIXTURES = Path(__file__).parents[1] / "fixtures"
STACKS = {name: (REPO / f"Pulumi.{name}.yaml").read_text() for name in ("dev", "prod")}
WORKERS = [
    (REPO / "examples" / "worker.yaml").read_text(),
    (FIXTURES / "worker-v1.11.yaml").read_text(),
    (FIXTURES / "worker-v1.12.yaml").read_text(),
]
#: The worker config a stack needs for its Talos version (v1.12 fixtures are multi-document).
WORKER_TALOS = {0: "v1.11.6", 1: "v1.11.6", 2: "v1.12.2"}
#: CPU seconds (not wall time: other builds on a busy machine must not fail the test).
SECONDS_PER_EXAMPLE = 2.0
FUZZ = settings(
    max_examples=100,
    deadline=None,  # timed below, by the property itself
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(
        alphabet=st.characters(codec="utf-8", min_codepoint=0x80),
        max_size=30,
    ),
    st.sampled_from(
        ["x" * 300_000, "é" * 5_000 + "\U0001f600", "-----BEGIN PRIVATE KEY-----", "10.0.0.0/8", ""]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document: keys of maps and indexes of lists."""
    found = [prefix]
    if isinstance(node, dict):
        for key, inner in node.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(node, list):
        for index, inner in enumerate(node):
            found += paths(inner, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """1-3 mutations: replace a value, delete a key, add a random key, wrap in a list."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(document)))
        if not path:
            continue
        *parent_path, last = path
        parent: Any = document
        for part in parent_path:
            parent = parent[part]
        operation = draw(st.sampled_from(["replace", "delete", "add", "wrap"]))
        if operation == "replace":
            parent[last] = draw(values)
        elif operation == "delete":
            del parent[last]
        elif operation == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.text(min_size=1, max_size=20))] = draw(values)
        elif operation == "wrap":
            parent[last] = [parent[last]]
    return document


def render_checked(
    project: Path, stack: str, worker: str | bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """The property: exit 0, or exit 2 with every problem naming where it is; in bounded time."""
    (project / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (project / "examples").mkdir(exist_ok=True)
    (project / "Pulumi.dev.yaml").write_text(stack, encoding="utf-8", errors="surrogateescape")
    worker_path = project / "examples" / "worker.yaml"
    if isinstance(worker, bytes):
        worker_path.write_bytes(worker)
    else:
        worker_path.write_text(worker, encoding="utf-8", errors="surrogateescape")
    started = time.process_time()
    code = render_main(
        ["render", "--project-dir", str(project), "--stack", "dev", "--out", str(project / "out")]
    )
    elapsed = time.process_time() - started
    captured = capsys.readouterr()
    assert elapsed < SECONDS_PER_EXAMPLE, f"took {elapsed:.2f}s"
    assert "Traceback" not in captured.err
    assert code in {0, 2}, captured.err
    if code == 2:
        assert_names_where(captured.err)


#: Where a stack-config problem is: its config key, the stack file, or a command-line option.
CONFIG_WHERE = re.compile(r"^(hcloud-talos-autoscaler:\S|hcloud:token: |--stack: |--out: |/\S+)")
#: Where a Talos config problem is: the key path in the document, or the line it failed at.
TALOS_WHERE = re.compile(
    r"^(failed to load config: .*(line \d+|every document)|has no v1alpha1 document|"
    r"is \d+ bytes \(|\S[^\n]*?: )"
)


def assert_names_where(err: str) -> None:
    problems = [line.removeprefix("  - ") for line in err.splitlines() if line.startswith("  - ")]
    assert problems, err
    if err.startswith("error: the stack configuration has"):
        where = CONFIG_WHERE
    else:
        assert err.startswith("error: the Talos worker config of pool "), err
        assert "(from talos.workerConfigFile)" in err.splitlines()[0]
        where = TALOS_WHERE
    for problem in problems:
        assert where.match(problem), problem
        assert len(problem) <= 1_100


@FUZZ
@given(data=st.data(), stack_name=st.sampled_from(sorted(STACKS)))
def test_mutated_stack_files_never_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject, stack_name: str
) -> None:
    document = data.draw(mutated(yaml.safe_load(STACKS[stack_name])))
    render_checked(tmp_path, yaml.safe_dump(document, allow_unicode=True), WORKERS[0], capsys)


@FUZZ
@given(data=st.data(), which=st.sampled_from(sorted(WORKER_TALOS)))
def test_mutated_worker_configs_never_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject, which: int
) -> None:
    documents = [doc for doc in yaml.safe_load_all(WORKERS[which]) if doc]
    changed = data.draw(mutated(documents))
    worker = "---\n".join(yaml.safe_dump(doc, allow_unicode=True) for doc in changed)
    stack = STACKS["dev"].replace("version: v1.11.6", f"version: {WORKER_TALOS[which]}")
    render_checked(tmp_path, stack, worker, capsys)


@FUZZ
@given(
    which=st.sampled_from(["stack", "worker"]),
    position=st.floats(min_value=0, max_value=1),
    inserted=st.binary(min_size=1, max_size=64)
    | st.sampled_from([b"\xff\xfe", b"\x00", b"&a [*a]", b"*x", b"\t\n  - ", b":"]),
)
def test_random_bytes_in_the_files_never_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str, position: float, inserted: bytes
) -> None:
    original = (STACKS["dev"] if which == "stack" else WORKERS[0]).encode()
    at = int(position * len(original))
    broken = original[:at] + inserted + original[at:]
    if which == "stack":
        render_checked(tmp_path, broken.decode("utf-8", "surrogateescape"), WORKERS[0], capsys)
    else:
        render_checked(tmp_path, STACKS["dev"], broken, capsys)


@FUZZ
@given(data=st.data())
def test_mutated_engine_config_raises_only_config_errors(data: st.DataObject) -> None:
    """What ``pulumi preview`` hands the program: every value as JSON text."""
    flat = yaml.safe_load(STACKS["dev"])["config"]
    flat["hcloud:token"] = TEST_TOKEN
    changed = data.draw(mutated(flat))
    engine = {
        str(key): value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in changed.items()
    }
    started = time.process_time()
    try:
        sections, token = sections_from_flat_config(engine)
        parse_stack_config(sections, token, REPO)
    except ConfigError as error:
        assert error.problems
        assert all(CONFIG_WHERE.match(str(problem)) for problem in error.problems), error
    assert time.process_time() - started < SECONDS_PER_EXAMPLE


#: Values as YAML documents hold them, without the huge strings (slow to dump, nothing new).
documents_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.dates()
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
    | st.sampled_from(["x" * 1_200, "a: b", "- x", "line\nline\n", " lead", "\u2028", "yes"])
    # folded at the width at any indent; not folded, but near it
    | st.sampled_from(["word " * 250, "word " * 110, "line\n\n  indented\n \n"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)


def dumped_whole(documents: list[dict[Any, Any]]) -> str:
    """The oracle: each document dumped whole by PyYAML, as the program's settings dump it."""
    return "---\n".join(
        yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)
        for document in documents
    )


@FUZZ
@given(
    documents=st.lists(
        st.dictionaries(
            st.text(max_size=12) | st.integers() | st.booleans(), documents_values, max_size=6
        ),
        min_size=1,
        max_size=3,
    )
)
def test_worker_configs_written_section_by_section_are_the_same_bytes(
    documents: list[dict[Any, Any]],
) -> None:
    """The pools share the YAML of their unchanged sections; the user data must not change."""
    whole = dumped_whole(documents)
    written: dict[str, str] = {}
    assert dump_documents(documents, written) == whole
    assert dump_documents(documents, written) == whole  # from what was written before


#: Keys as documents hold them, among them one the dumper writes as a complex ``?`` key.
document_keys = st.text(max_size=12) | st.integers() | st.booleans() | st.just("k" * 130)


@FUZZ
@given(
    documents=st.lists(
        st.dictionaries(
            document_keys,
            st.dictionaries(document_keys, documents_values, min_size=1, max_size=6),
            max_size=4,
        ),
        min_size=1,
        max_size=3,
    )
)
@example(  # breaks inside quoted scalars, a complex key, long scalars: each at two indents
    documents=[
        {"machine": {"files": ["line\nline\n", {"inner": "a\n\nb"}], "k" * 130: {"x": 1}}},
        {"machine": {"folded": "word " * 250}, "cluster": {"near": "word " * 110}},
        {"k" * 130: {"line": "line\nline\n"}},
    ]
)
def test_maps_written_section_by_section_are_the_same_bytes(
    documents: list[dict[Any, Any]],
) -> None:
    """Top-level maps (``machine``) are written from their own sections' YAML, indented."""
    whole = dumped_whole(documents)
    written: dict[str, str] = {}
    assert dump_documents(documents, written) == whole
    assert dump_documents(documents, written) == whole


def test_a_pool_writes_only_the_sections_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second pool's config dumps only its own label, not the rest of ``machine``."""
    base = yaml.safe_load((REPO / "examples" / "worker.yaml").read_text())
    base["machine"]["nodeLabels"] = {"topology.kubernetes.io/zone": "hetzner-cloud"}
    other = copy.deepcopy(base)
    other["machine"]["nodeLabels"]["node.kubernetes.io/pool"] = "other"
    written: dict[str, str] = {}
    dump_documents([base], written)
    dumped: list[Any] = []
    real_dump = yaml.safe_dump

    def counting_dump(document: Any, *args: Any, **kwargs: Any) -> str:
        dumped.append(document)
        return real_dump(document, *args, **kwargs)

    monkeypatch.setattr(yaml, "safe_dump", counting_dump)
    text = dump_documents([other], written)
    assert text == real_dump(other, sort_keys=False, default_flow_style=False, width=1000)
    assert dumped == [{"node.kubernetes.io/pool": "other"}]


def test_a_document_with_shared_values_is_written_whole() -> None:
    shared = {"endpoints": ["https://mirror.gcr.io"]}
    document = {"a": shared, "b": shared}  # YAML aliases load like this
    whole = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)
    assert "&id001" in whole
    assert dump_documents([document], {}) == whole
