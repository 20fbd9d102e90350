"""Contacts: one row per person who interacted with a connected account — the audience a creator takes elsewhere."""
