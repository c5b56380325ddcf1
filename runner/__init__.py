"""runner: one batch job on one VM from a baked image."""
