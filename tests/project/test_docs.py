"""The README stays short and over ``docs/``; every link between them leads somewhere."""

import re
from pathlib import Path

import pytest

from core.config import AutoscalerSettings
from core.releases.autoscaler import FEATURE_SINCE

REPO = Path(__file__).parents[2]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
#: ``[text](target)``, not images; a target is a path, an anchor or both.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings (lower case, punctuation dropped, - for spaces)."""
    ids = set()
    for line in page.read_text().splitlines():
        if heading := re.match(r"#+ (.*)", line):
            text = re.sub(r"[^\w\- ]", "", heading.group(1).lower())
            ids.add(text.replace(" ", "-"))
    return ids


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_the_docs_pages_exist_and_the_readme_links_every_one() -> None:
    assert len(PAGES) >= 9
    readme = README.read_text()
    for page in PAGES:
        assert f"](docs/{page.name})" in readme, page.name


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text()) if not t.startswith(("http", "mailto:"))]
    assert targets
    for target in targets:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"


def test_the_readme_shows_the_test_command_ci_runs_and_the_offline_render() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    (command,) = re.findall(r"^make \w+$", ci, flags=re.MULTILINE)
    development = README.read_text().split("\n## Development\n", 1)[1]
    assert f"\n{command} " in development
    assert "make render" in README.read_text()


def test_the_configuration_table_lists_every_autoscaler_key_with_its_minimum_version() -> None:
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    table = page.split("\n## Keys\n", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1] for line in table.splitlines() if line.startswith("| `")}
    listed = " ".join(rows)
    for field in AutoscalerSettings.model_fields.values():
        assert f"`autoscaler.{field.alias}`" in listed, field.alias
    for key in ("nodeAnnotations", "placementGroup", "serverLabels", "subnet", "priority"):
        assert f"`autoscaler.nodeGroups[].{key}`" in listed, key
    for key, setting in (
        ("placementGroup", "placementGroup"),
        ("serverLabels", "serverLabels"),
        ("subnet", "subnetIPRange"),
    ):
        major, minor = FEATURE_SINCE[setting]
        (row,) = [line for line in table.splitlines() if f"nodeGroups[].{key}`" in line]
        assert f"Autoscaler ≥ {major}.{minor}" in row
