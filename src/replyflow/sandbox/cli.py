"""Sandbox commands: ``replyflow demo`` seeds the demo; ``replyflow run-demo`` is what ``make run`` starts."""

from __future__ import annotations

import click

from replyflow.cli import emit_json, load_settings_or_exit


def _print_welcome(seed: object, *, url: str) -> None:
    from replyflow.sandbox.demo import DemoSeed
    from replyflow.sandbox.seed import INSTAGRAM_LOGIN_USERNAME

    assert isinstance(seed, DemoSeed)
    lines = [
        "",
        "replyflow is running in sandbox mode: a built-in Graph API emulator stands in for Meta.",
        f"  Dashboard:  {url}/app",
        f"  Sign in:    {seed.email}  /  {seed.password}",
        f"  API key:    {seed.api_key}   (shown once; curl -H 'Authorization: Bearer …' {url}/api/accounts)",
        "  Try it:     open Sandbox in the dashboard and comment ROAST on the new-harvest reel (LINK and RECIPE",
        "              work on the posts that ask for them).",
        f"  No Page?    Integrations → Connect with Instagram connects @{INSTAGRAM_LOGIN_USERNAME} (Instagram Login).",
        "",
    ]
    click.echo("\n".join(lines))


def register(group: click.Group) -> None:
    @group.command("demo")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
    def demo(as_json: bool) -> None:
        """Sandbox only: seed a demo workspace, a connected account, its posts and one rule (idempotent)."""
        from replyflow.cli import _runtime
        from replyflow.sandbox.demo import seed_demo_sync

        seed = seed_demo_sync(_runtime())
        if seed.server_url is None:
            click.echo(
                "No running replyflow server uses this data folder, so the demo was written to the sandbox's world "
                "file. Start 'replyflow serve' from this folder to use it.",
                err=True,
            )
        if as_json:
            emit_json(seed.as_json())
        else:
            _print_welcome(seed, url=seed.server_url or load_settings_or_exit().public_url)

    @group.command("run-demo", hidden=True)
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
    def run_demo(host: str, port: int) -> None:
        """Seed the demo, print how to sign in, then serve with the worker (what ``make run`` does)."""
        from replyflow.cli import _runtime
        from replyflow.sandbox.demo import seed_demo_sync
        from replyflow.server import serve

        settings = load_settings_or_exit()
        if not settings.is_sandbox:
            raise click.ClickException("make run is the sandbox demo; use 'replyflow serve' with real credentials.")
        seed = seed_demo_sync(_runtime())
        _print_welcome(seed, url=settings.public_url)
        serve(settings, host=host, port=port, run_worker=True)
