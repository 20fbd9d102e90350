"""The Comment → DM engine: rules, matching, runs, quotas and the queue."""
