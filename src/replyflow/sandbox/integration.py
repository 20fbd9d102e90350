"""Wires the emulator into our app in sandbox mode: the Graph API under /sandbox and the /api/sandbox routes."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Called by replyflow.app.create_app when the configuration says sandbox mode; nowhere else."""
    from replyflow.sandbox import wiring

    wiring.install(app)
