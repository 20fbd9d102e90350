"""Dashboard users: creating them, setting passwords (argon2 hashes) and checking a password at sign-in."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from replyflow.db import utcnow
from replyflow.errors import Conflict, NotFound, ValidationFailed
from replyflow.workspaces.models import User, Workspace
from replyflow.workspaces.roles import Role, parse_role

PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 1024
DEMO_EMAIL = "demo@replyflow.local"

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    email = normalise_email(email)
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValidationFailed(
            "This does not look like an email address.", field="email", hint="Use the form name@example.com."
        )
    return email


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_CHARS:
        raise ValidationFailed(
            f"The password is too short: use at least {PASSWORD_MIN_CHARS} characters.",
            field="password",
            hint="A few unrelated words make a long password that is easy to remember.",
        )
    if len(password) > PASSWORD_MAX_CHARS:
        raise ValidationFailed(f"The password is longer than {PASSWORD_MAX_CHARS} characters.", field="password")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(*, session: Session, workspace: Workspace, email: str, password: str, role: str | None = None) -> User:
    """A dashboard user; without ``role``, the workspace's first user is its owner and later ones are members."""
    email = check_email(email)
    check_password(password)
    if role is None:
        role = Role.OWNER if count_users(session=session, workspace_id=workspace.id) == 0 else Role.MEMBER
    role = parse_role(role)
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(
            f"A user with the email {email} already exists.",
            hint="Sign in with it, or set a new password with 'replyflow user set-password'.",
        )
    user = User(workspace_id=workspace.id, email=email, password_hash=hash_password(password), role=role.value)
    session.add(user)
    session.flush()
    return user


def get_user_by_email(*, session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(
            f"No user with the email {normalise_email(email)}.", hint="Create one with 'replyflow user create'."
        )
    return user


def set_password(*, session: Session, user: User, password: str) -> None:
    user.password_hash = hash_password(check_password(password))
    session.flush()


def list_users(*, session: Session, workspace: Workspace) -> list[User]:
    return list(session.scalars(select(User).where(User.workspace_id == workspace.id).order_by(User.created_at)))


def count_users(*, session: Session, workspace_id: str) -> int:
    return session.scalar(select(func.count()).select_from(User).where(User.workspace_id == workspace_id)) or 0


def verify_credentials(*, session: Session, email: str, password: str) -> User | None:
    """The user when the password is right, else ``None`` (the same answer for an unknown email)."""
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


@dataclass(frozen=True)
class DemoUser:
    user: User
    password: str | None  # set only when this call created the user or gave it a new password


def ensure_demo_user(*, session: Session, workspace: Workspace, reset_password: bool = True) -> DemoUser:
    """The sandbox's demo sign-in (``demo@replyflow.local``); a fresh random password unless told otherwise."""
    user = session.scalar(select(User).where(User.email == DEMO_EMAIL))
    password = secrets.token_urlsafe(12)
    if user is None:
        return DemoUser(
            user=create_user(
                session=session, workspace=workspace, email=DEMO_EMAIL, password=password, role=Role.OWNER
            ),
            password=password,
        )
    if user.workspace_id != workspace.id:
        raise Conflict("The demo user belongs to another workspace.", hint="Use that workspace for the demo.")
    if not reset_password:
        return DemoUser(user=user, password=None)
    set_password(session=session, user=user, password=password)
    return DemoUser(user=user, password=password)
