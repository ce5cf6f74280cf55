"""The project's name, and the type tokens and names of everything the program registers.

One table for the components (which build the names), ``plan`` and ``render`` (which list
them) and the tests (which compare both with what the engine registers). The names are
part of every existing stack's state: a changed one replaces the resource.
"""

from __future__ import annotations

#: The Pulumi project, the namespace of its config keys and the ``managed-by`` label value.
PROJECT = "hcloud-talos-autoscaler"
