"""make bench: a job measured against the physical floor of this machine."""
