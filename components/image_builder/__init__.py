"""The Talos snapshot as a Pulumi dynamic resource (``provider``); the build is in ``core``.

``__main__`` keeps the documented ``python -m components.image_builder`` command.
"""
