"""The Talos snapshot build: a temporary rescue server writes the image, then goes.

``pipeline`` runs one build against the Hetzner API; ``components.image_builder.provider``
wraps it as a Pulumi dynamic resource and ``cli.image_builder`` is its command line.
"""
