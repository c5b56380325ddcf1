"""Fan-out: one job over many VMs, each an ordinary shard job working through a slice of the items."""
