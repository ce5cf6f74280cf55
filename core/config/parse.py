"""From the project's config sections to a ``StackConfig``, or every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core import hetzner
from core.config.model import (
    SECTIONS,
    AutoscalerSettings,
    ConfigModel,
    ImageSettings,
    NetworkSettings,
    StackConfig,
    TalosSettings,
)
from core.config.problems import (
    ConfigError,
    Problem,
    key_part,
    kind_of,
    problems_from,
    unknown_key_message,
)
from core.config.rules import cross_section_problems
from core.config.secrets import SecretValue, as_secret
from core.config.sources import load_worker_config, shape_problem

#: Keys that existed in earlier releases: a stack that still sets one is told what replaced it.
REMOVED_KEYS: dict[str, str] = {
    "autoscaler.providerIdController": (
        "was removed: the Talos CCM it deployed cannot set spec.providerID next to Cozystack's "
        "Local CCM (which removes the uninitialized taint first). Delete the key: "
        "autoscaler.providerId: setter (the default) deploys the providerID setter instead; "
        "use providerId: none only when your own cloud controller sets spec.providerID"
    ),
}

_SECTION_MODELS: dict[str, type[ConfigModel]] = {
    "talos": TalosSettings,
    "network": NetworkSettings,
    "image": ImageSettings,
    "autoscaler": AutoscalerSettings,
}


def parse_stack_config(
    sections: Mapping[str, Any],
    hcloud_token: Any,
    base_dir: Path,
    *,
    require_token: bool = True,
    catalogue: hetzner.Catalogue | None = None,
) -> StackConfig:
    """Validate the project's config sections and return the typed stack config.

    ``sections`` maps the keys of the project namespace (``talos``, ``network``,
    ...) to their values; ``hcloud_token`` is ``hcloud:token`` (or the
    ``HCLOUD_TOKEN`` environment variable). Server types are checked against
    ``catalogue`` (the live list at preview) or the built-in table. Raises
    ConfigError listing every problem found.
    """
    problems: list[Problem] = []
    for key in sections:
        if key not in _SECTION_MODELS:
            problems.append(Problem(key_part(key), unknown_key_message(key, SECTIONS)))

    context = {"catalogue": catalogue or hetzner.BUILT_IN_CATALOGUE}
    parsed: dict[str, Any] = {}
    for key, model in _SECTION_MODELS.items():
        raw = sections.get(key)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.append(
                Problem(key, f"must be an object of settings (key: value), got {kind_of(raw)}")
            )
            continue
        shape = shape_problem(raw)
        if shape:
            problems.append(Problem(key, shape))
            continue
        raw = _without_removed_keys(key, raw, problems)
        try:
            parsed[key] = model.model_validate(raw, context=context)
        except ValidationError as error:
            problems.extend(problems_from(error, key, model))

    token: SecretValue | None = None
    if hcloud_token is None or hcloud_token == "":
        if require_token:
            problems.append(
                Problem(
                    "hcloud:token",
                    "is not set: run `pulumi config set --secret hcloud:token` "
                    "(or export HCLOUD_TOKEN)",
                )
            )
    else:
        try:
            token = as_secret(hcloud_token)
        except ValueError as error:
            problems.append(Problem("hcloud:token", str(error)))

    base = load_worker_config(parsed["talos"], base_dir, problems) if "talos" in parsed else None

    if len(parsed) == len(_SECTION_MODELS):
        stack = StackConfig(
            talos=parsed["talos"],
            network=parsed["network"],
            image=parsed["image"],
            autoscaler=parsed["autoscaler"],
            hcloud_token=token,
            base_worker_config=base[0] if base else None,
            base_documents=base[1] if base else None,
        )
        problems.extend(cross_section_problems(stack))
    if problems:
        raise ConfigError(problems)
    return stack


def _without_removed_keys(
    section: str, raw: Mapping[str, Any], problems: list[Problem]
) -> dict[str, Any]:
    """The section without keys of earlier releases; each one found becomes a problem."""
    kept = dict(raw)
    for path, message in REMOVED_KEYS.items():
        owner, _, key = path.partition(".")
        if owner == section and key in kept:
            del kept[key]
            problems.append(Problem(path, message))
    return kept
