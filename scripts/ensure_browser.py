"""Make Debian's Chromium available for the browser tests, or say plainly why they will be skipped.

Playwright is only the driver here: it must never download a browser of its own, so we install Debian's
``chromium`` package (and an emoji font, so captions and DMs render in screenshots) when we are root and apt-get
exists; otherwise the browser tests skip with a reason. This never fails ``make test``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
PACKAGES = ["chromium", "fonts-noto-color-emoji"]


def main() -> int:
    if os.path.exists(CHROMIUM) and os.path.exists(EMOJI_FONT):
        return 0
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        if not os.path.exists(CHROMIUM):
            print("browser tests will be skipped: /usr/bin/chromium is missing and apt-get is not usable here",
                  file=sys.stderr)  # fmt: skip
        return 0
    print(f"installing Debian's {', '.join(PACKAGES)} for the browser tests ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [apt, "install", "-y", "-q", *PACKAGES]
    for attempt in (install, [apt, "update", "-q"], install):
        result = subprocess.run(attempt, env=env, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
        if attempt is install and result.returncode == 0 and os.path.exists(CHROMIUM):
            return 0
    if not os.path.exists(CHROMIUM):
        print("browser tests will be skipped: installing chromium failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
