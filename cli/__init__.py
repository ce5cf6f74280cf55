"""The command lines: the offline ``render`` and the image builder (no Pulumi engine needed)."""
