"""``python -m replyflow`` is the same as the ``replyflow`` command."""

from replyflow.cli import main

main()
