"""The Talos snapshot builder: a temporary rescue server writes the image, then goes.

``pipeline`` runs one build against the Hetzner API (no Pulumi inside),
``provider`` wraps it as a Pulumi dynamic resource, ``__main__`` is the CLI.
"""
