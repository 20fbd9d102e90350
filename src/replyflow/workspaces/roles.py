"""Roles in a workspace and what each may do: the one table the API and the dashboard both enforce.

``owner`` does everything, including members and API keys; ``admin`` connects and disconnects accounts and
manages rules; ``member`` reads everything and manages rules (CONTRACT.md, ``replyflow user create --role``).
API keys act for the whole workspace, with an owner's rights: only owners (and the server's operator) make them.
"""

from __future__ import annotations

import enum

from replyflow.errors import Forbidden, ValidationFailed


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Permission(enum.StrEnum):
    MANAGE_RULES = "manage_rules"
    MANAGE_ACCOUNTS = "manage_accounts"  # connect, disconnect, re-authorise
    MANAGE_MEMBERS = "manage_members"  # invite, change roles, remove
    MANAGE_KEYS = "manage_keys"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset({Permission.MANAGE_RULES, Permission.MANAGE_ACCOUNTS}),
    Role.MEMBER: frozenset({Permission.MANAGE_RULES}),
}

ROLE_LABELS: dict[Role, str] = {Role.OWNER: "Owner", Role.ADMIN: "Admin", Role.MEMBER: "Member"}
ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Everything, including members and API keys.",
    Role.ADMIN: "Connects and disconnects accounts, manages rules.",
    Role.MEMBER: "Sees everything and manages rules.",
}

# What a refused person was trying to do, in the words of the 403's message.
_ACTIONS: dict[Permission, str] = {
    Permission.MANAGE_RULES: "change rules",
    Permission.MANAGE_ACCOUNTS: "connect, disconnect or re-authorise Instagram accounts",
    Permission.MANAGE_MEMBERS: "invite people, change roles or remove members",
    Permission.MANAGE_KEYS: "manage API keys",
}


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise ValidationFailed("That is not a role.", field="role", hint="Use owner, admin or member.") from None


def can(role: str, permission: Permission) -> bool:
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:  # an unknown role in the database may do nothing beyond reading
        return False


def roles_with(permission: Permission) -> list[Role]:
    return [role for role in Role if permission in ROLE_PERMISSIONS[role]]


class RoleForbidden(Forbidden):
    """A signed-in person whose role does not allow this (the server refuses; hidden buttons are only a courtesy)."""

    code = "insufficient_role"


def check_permission(role: str, permission: Permission) -> None:
    if can(role, permission):
        return
    allowed = roles_with(permission)
    names = " or ".join(ROLE_LABELS[r].lower() + "s" for r in allowed)
    label = ROLE_LABELS[Role(role)].lower() if role in set(Role) else role
    raise RoleForbidden(
        f"Your role in this workspace ({label}) cannot {_ACTIONS[permission]}.",
        hint=f"Ask one of the workspace's {names} to do it, or an owner to change your role on the Members page.",
        extra={"role": role, "allowed_roles": [r.value for r in allowed]},
    )
