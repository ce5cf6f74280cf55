"""Deleting what the autoscaler created for a pool: pure sweep logic and its dynamic provider."""
