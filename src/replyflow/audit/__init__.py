"""The audit log: who changed which account, rule, member or key, and when."""
