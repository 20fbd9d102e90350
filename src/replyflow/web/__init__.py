"""The server-rendered dashboard (Jinja2 + htmx)."""
