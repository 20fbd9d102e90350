"""Make Debian's Chromium available for the browser tests, or say plainly why they will be skipped.

Playwright is only the driver here: it must never download a browser of its own, so we install Debian's
``chromium`` package when we are root and apt-get exists, and otherwise leave the tests to skip with a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print(
            "browser tests will be skipped: /usr/bin/chromium is missing and apt-get is not usable here",
            file=sys.stderr,
        )
        return 0
    print("installing Debian's chromium for the browser tests (apt-get install -y chromium) ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in (
        [apt, "install", "-y", "-q", "chromium"],
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "chromium"],
    ):
        result = subprocess.run(attempt, env=env, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
        if attempt[1] == "install" and result.returncode == 0 and os.path.exists(CHROMIUM):
            return 0
    print("browser tests will be skipped: installing chromium failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
