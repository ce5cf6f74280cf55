"""A stack's config, validated into a ``StackConfig`` (or every problem at once), and its warnings.

``read_stack_file`` serves the offline ``render`` (secrets stay encrypted, no token
needed); ``read_engine_config`` the Pulumi program (the engine decrypted everything, and a
preview with a token checks server types against the project's live list).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
from core.config.rules import (
    cross_section_problems,
    extension_warnings,
    plaintext_secret_warnings,
    pool_size_warnings,
    server_type_warnings,
)
from core.config.secrets import SecretValue, as_secret
from core.config.sources import (
    load_stack_file,
    load_worker_config,
    sections_from_flat_config,
    shape_problem,
    stack_file,
)
from core.hetzner import facts as hetzner
from core.hetzner.access import api_endpoint, environment_token
from core.hetzner.catalogue import CatalogueUnavailable, TokenRefused, fetch_catalogue

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


def read_stack_file(project_dir: Path, stack_name: str) -> tuple[StackConfig, list[str]]:
    """``Pulumi.<stack>.yaml`` validated offline, and what its user should be warned about."""
    sections, token = load_stack_file(project_dir, stack_name)
    stack = parse_stack_config(sections, token, project_dir, require_token=False)
    warnings = []
    if stack.hcloud_token is None:
        warnings.append(
            "hcloud:token is not set in the stack file: set it with "
            "`pulumi config set --secret hcloud:token` (or export HCLOUD_TOKEN) before "
            "`pulumi up`"
        )
    source = stack_file(project_dir, stack_name).name
    warnings += plaintext_secret_warnings(stack, lambda _key: False, source)
    warnings += server_type_warnings(stack, None)
    warnings += extension_warnings(stack) + pool_size_warnings(stack)
    return stack, warnings


def read_engine_config(
    flat: Mapping[str, Any],
    is_secret: Callable[[str], bool],
    *,
    preview: bool,
    stack_name: str,
    project_dir: Path,
) -> tuple[StackConfig, list[str]]:
    """The running stack's config (``namespace:key`` values from the engine), validated.

    All keys are read (not only the known ones) so that a typo such as
    ``hcloud-talos-autoscaler:netwrok`` is reported instead of ignored. ``is_secret``
    answers whether a key was set with ``--secret``. In a preview with a token the server
    types are checked against the project's live list from the Hetzner API.
    """
    sections, token = sections_from_flat_config(flat)
    if token is None:
        token = environment_token()
    warnings: list[str] = []
    catalogue: hetzner.Catalogue | None = None
    if preview and isinstance(token, str) and token:
        endpoint = hcloud_endpoint(flat)
        try:
            catalogue = fetch_catalogue(token, endpoint)
        except TokenRefused as error:
            raise ConfigError([Problem("hcloud:token", str(error))]) from None
        except CatalogueUnavailable as error:
            warnings.append(
                f"could not read the server types from the Hetzner API at {endpoint} ({error}); "
                "checked against the built-in table only"
            )
    stack = parse_stack_config(sections, token, project_dir, catalogue=catalogue)
    from_environment = "hcloud:token" not in flat  # HCLOUD_TOKEN is in no file

    def is_encrypted(key: str) -> bool:
        return is_secret(key) or (key == "hcloud:token" and from_environment)

    warnings += plaintext_secret_warnings(stack, is_encrypted, f"Pulumi.{stack_name}.yaml")
    warnings += server_type_warnings(stack, catalogue)
    warnings += extension_warnings(stack) + pool_size_warnings(stack)
    return stack, warnings


def hcloud_endpoint(flat: Mapping[str, Any]) -> str:
    """The Hetzner API URL the hcloud provider uses: ``hcloud:endpoint``, ``HCLOUD_ENDPOINT``,
    else the public API."""
    configured = flat.get("hcloud:endpoint")
    return api_endpoint(configured if isinstance(configured, str) else None)
