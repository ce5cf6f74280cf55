"""Syntax rules of Kubernetes, Hetzner and Pulumi, checked before anything is sent to them.

Each function returns None when the value is fine, else the reason and the fix
(the caller names the key). Sources:

- Kubernetes label keys and values, DNS-1123 labels: ``k8s.io/apimachinery``
  ``pkg/util/validation/validation.go`` (``IsQualifiedName``, ``IsValidLabelValue``,
  ``IsDNS1123Label``, ``IsDNS1123Subdomain``).
- Hetzner label keys and values: hcloud-go ``labels.go`` (FACTS §7).
- Hetzner networks: the API's ``ip_range`` "must be one of the private IPv4
  ranges of RFC 1918", "minimum network size is /24"; Networks are IPv4 only.
- Pulumi stack names: ``^[A-Za-z0-9_.-]{1,100}$`` (pulumi ``validateStackName``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from core.redaction import shown

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_NAME_MAX = 63
LABEL_VALUE_MAX = 63

HETZNER_LABEL_KEY = re.compile(
    r"^([a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]){0,253}[a-z0-9A-Z])?/)?"
    r"[a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]|){0,61}[a-z0-9A-Z])?$"
)
HETZNER_LABEL_VALUE = re.compile(r"^(([a-z0-9A-Z](?:[\-_.]|[a-z0-9A-Z]){0,61})?[a-z0-9A-Z]$|$)")

PRIVATE_IPV4_NETWORKS = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
#: Hetzner refuses smaller networks.
SMALLEST_NETWORK_PREFIX = 24
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def dns_label_problem(name: str) -> str | None:
    """RFC 1123 label: what a namespace name must be."""
    if len(name) > DNS_LABEL_MAX:
        return f"is {len(name)} characters long; a DNS label has at most {DNS_LABEL_MAX}"
    if not _DNS_LABEL.match(name):
        return (
            f"{shown(name)} is not a DNS label (RFC 1123): use lower-case letters, digits and "
            "'-', starting and ending with a letter or digit, e.g. cluster-autoscaler"
        )
    return None


def dns_subdomain_problem(name: str) -> str | None:
    """RFC 1123 subdomain: what a priority class name must be."""
    if len(name) > DNS_SUBDOMAIN_MAX:
        return f"is {len(name)} characters long; a DNS subdomain has at most {DNS_SUBDOMAIN_MAX}"
    if not _DNS_SUBDOMAIN.match(name):
        return (
            f"{shown(name)} is not a DNS subdomain (RFC 1123): use lower-case letters, digits, "
            "'-' and '.', e.g. system-cluster-critical"
        )
    return None


def kubernetes_label_key_problem(key: Any) -> str | None:
    """``[prefix/]name``: prefix a DNS subdomain (<= 253), name <= 63 of ``[A-Za-z0-9-_.]``."""
    if not isinstance(key, str):
        return f"label key {shown(key)} is not a string"
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"label key {shown(key)} has an empty prefix before '/'"
    if prefix and (len(prefix) > DNS_SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.match(prefix)):
        return (
            f"label key {shown(key)}: the prefix {shown(prefix)} must be a DNS subdomain "
            "(lower-case letters, digits, '-' and '.', at most 253 characters), e.g. example.com"
        )
    if not name or len(name) > LABEL_NAME_MAX or not _QUALIFIED_NAME.match(name):
        return (
            f"label key {shown(key)} is not valid in Kubernetes: the name part must be 1-"
            f"{LABEL_NAME_MAX} characters of letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit"
        )
    return None


def kubernetes_label_value_problem(key: Any, value: Any) -> str | None:
    """Empty, or <= 63 of ``[A-Za-z0-9-_.]`` starting and ending alphanumeric."""
    if not isinstance(value, str):
        return f"label {shown(key)}: value {shown(value)} is not a string; quote it"
    if value and (len(value) > LABEL_VALUE_MAX or not _QUALIFIED_NAME.match(value)):
        return (
            f"label {shown(key)}: value {shown(value)} is not valid in Kubernetes: at most "
            f"{LABEL_VALUE_MAX} characters of letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit (or empty)"
        )
    return None


def kubernetes_label_problems(labels: Mapping[Any, Any]) -> list[str]:
    """Every invalid key or value of a Kubernetes label map."""
    problems = []
    for key, value in labels.items():
        problem = kubernetes_label_key_problem(key) or kubernetes_label_value_problem(key, value)
        if problem:
            problems.append(problem)
    return problems


def hetzner_label_problems(labels: Mapping[Any, Any]) -> list[str]:
    """Every key or value Hetzner's API would refuse (hcloud-go ``labels.go``)."""
    problems = []
    for key, value in labels.items():
        if not isinstance(key, str) or not HETZNER_LABEL_KEY.match(key):
            problems.append(
                f"label key {shown(key)} is not a valid Hetzner label key ([prefix/]name of "
                "letters, digits, '-', '_' and '.', the name at most 63 characters)"
            )
        elif not isinstance(value, str) or not HETZNER_LABEL_VALUE.match(value):
            problems.append(
                f"label {key}: value {shown(value)} is not a valid Hetzner label value (at most "
                "63 characters of letters, digits, '-', '_' and '.', starting and ending with a "
                "letter or digit, or empty)"
            )
    return problems


def private_ipv4_network_problem(cidr: str) -> str | None:
    """A Hetzner network range: IPv4, inside an RFC 1918 block, /24 or larger."""
    network = ipaddress.ip_network(cidr)
    if not isinstance(network, ipaddress.IPv4Network):
        return (
            f"{cidr} is an IPv6 range; Hetzner networks are IPv4 only: use a private range "
            "like 10.100.0.0/16"
        )
    if not any(network.subnet_of(block) for block in PRIVATE_IPV4_NETWORKS):
        return (
            f"{cidr} is not a private range; Hetzner networks must lie in 10.0.0.0/8, "
            "172.16.0.0/12 or 192.168.0.0/16 (RFC 1918), e.g. 10.100.0.0/16"
        )
    if network.prefixlen > SMALLEST_NETWORK_PREFIX:
        return (
            f"{cidr} is smaller than Hetzner's minimum network size /"
            f"{SMALLEST_NETWORK_PREFIX}; use a /16 like 10.100.0.0/16"
        )
    return None


def usable_addresses(cidr: str) -> int:
    """Servers a Hetzner subnet can hold: network, gateway and broadcast are reserved."""
    return max(0, ipaddress.ip_network(cidr).num_addresses - 3)


def stack_name_problem(stack: str) -> str | None:
    """Pulumi's rule, per part of ``[org/[project/]]stack``; never a path outside the project."""
    parts = stack.split("/")
    if len(parts) > 3 or any(not STACK_NAME.match(part) for part in parts):
        return (
            f"{shown(stack)} is not a Pulumi stack name: [org/[project/]]name, each part 1-100 "
            "letters, digits, '-', '_' or '.'"
        )
    if any(part in {".", ".."} for part in parts):
        return f"{shown(stack)} is not a stack name ('.' and '..' are folders, not stacks)"
    return None


def flag_name(key: str) -> str:
    """The flag the chart renders for an ``extraArgs`` key: leading dashes and ``_suffix`` go."""
    return key.lstrip("-").split("_", 1)[0]


def owned_flag_problems(extra_args: Iterable[str], owned: Mapping[str, str]) -> list[str]:
    """``extraArgs`` keys that would override a flag the chart or this program sets."""
    problems = []
    for key in extra_args:
        flag = flag_name(key)
        if flag in owned:
            problems.append(f"{shown(key)} sets --{flag}, which {owned[flag]}; remove it")
    return problems


def control_character_problem(text: str) -> str | None:
    """Values rendered into a chart's YAML or a command line must stay on one line."""
    if any(ord(char) < 0x20 or char in '"\\\x7f' for char in text):
        return (
            f"{shown(text)} contains a quote, backslash, newline or control character, which "
            "would break the rendered manifest; remove it"
        )
    return None
