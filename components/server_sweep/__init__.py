"""The per-pool record whose delete sweeps the pool's servers (the sweep: ``core.server_sweep``)."""
