"""Tenants, their dashboard users and API keys."""
