"""Conversations that follow a rule's DM: replies, taps, follow-ups and tracked links."""
