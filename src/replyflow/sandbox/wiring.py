"""(filled in by the lead once the emulator lands)"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    return None
