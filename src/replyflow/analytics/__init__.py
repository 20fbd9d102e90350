"""Counts and funnels computed from runs and threads."""
