"""The Pulumi ComponentResources of hcloud-talos-autoscaler: they wire ``core`` to resources.

Every decision lives in ``core`` (pure Python); a component registers resources from the
stack plan and hands its outputs to the next one. ``image_builder.provider`` and
``server_sweep.provider`` are the two dynamic providers: their module paths are pickled
into existing stacks' state and must stay importable. ``__main__`` keeps the documented
``python -m components render`` command (``cli.render``).
"""
