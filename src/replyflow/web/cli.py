"""``replyflow user ...``: dashboard users. Passwords come from a hidden prompt or stdin, never from argv."""

from __future__ import annotations

import sys

import click

from replyflow.cli import _runtime, emit_json


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        # One line; only the line break is removed so passwords may start or end with spaces.
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    return value


def register(group: click.Group) -> None:
    @group.group("user")
    def user_group() -> None:
        """People who sign in to the dashboard."""

    @user_group.command("create")
    @click.option("--workspace", "workspace_ref", required=True, help="Workspace id or name.")
    @click.option("--email", required=True, help="The address the person signs in with.")
    @click.option(
        "--role",
        type=click.Choice(["owner", "admin", "member"]),
        default=None,
        help="owner: everything, including members and API keys; admin: accounts and rules; member: reads "
        "everything and manages rules. Default: owner for the workspace's first user, member after that.",
    )
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on the last line.")
    def user_create(workspace_ref: str, email: str, role: str | None, password_stdin: bool, as_json: bool) -> None:
        """Create a dashboard user in a workspace."""
        from replyflow.workspaces import service, users

        runtime = _runtime()
        password = _read_password(password_stdin)
        with runtime.session() as session:
            workspace = service.get_workspace(session=session, ref=workspace_ref)
            user = users.create_user(session=session, workspace=workspace, email=email, password=password, role=role)
            result = {"user_id": user.id, "workspace_id": workspace.id, "email": user.email, "role": user.role}
        if as_json:
            emit_json(result)
        else:
            click.echo(
                f"User {result['email']} ({result['role']}) can now sign in at {runtime.settings.public_url}/login"
            )

    @user_group.command("set-password")
    @click.option("--email", required=True, help="The user's email address.")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
    def user_set_password(email: str, password_stdin: bool) -> None:
        """Give a user a new password and sign them out everywhere."""
        from replyflow.web.sessions import end_all_sessions
        from replyflow.workspaces import users

        runtime = _runtime()
        password = _read_password(password_stdin)
        with runtime.session() as session:
            user = users.get_user_by_email(session=session, email=email)
            users.set_password(session=session, user=user, password=password)
            end_all_sessions(session=session, user_id=user.id)
        click.echo(f"New password set for {user.email}; their open sessions were signed out.")

    @user_group.command("list")
    @click.option("--workspace", "workspace_ref", required=True, help="Workspace id or name.")
    @click.option("--json", "as_json", is_flag=True)
    def user_list(workspace_ref: str, as_json: bool) -> None:
        """List a workspace's dashboard users."""
        from replyflow.workspaces import service, users

        with _runtime().session() as session:
            workspace = service.get_workspace(session=session, ref=workspace_ref)
            rows = [
                {
                    "user_id": u.id,
                    "email": u.email,
                    "role": u.role,
                    "created_at": u.created_at.isoformat(),
                    "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                }
                for u in users.list_users(session=session, workspace=workspace)
            ]
        if as_json:
            emit_json({"items": rows})
        else:
            for row in rows:
                click.echo(f"{row['email']}  {row['role']}  last sign-in: {row['last_login_at'] or 'never'}")
