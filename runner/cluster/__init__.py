"""Multi-node jobs on Ray: a head and workers, each an ordinary job, planned here and launched thinly."""
