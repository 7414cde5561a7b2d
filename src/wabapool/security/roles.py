"""Roles and what each may do on the public API (SPEC section 5), and the verified principal."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    MEMBER = "member"


class Permission(Enum):
    VIEW_BILLING_INFO = "view_billing_info"
    VIEW_DEDUCTION_LOGS = "view_deduction_logs"  # mcc_logs and the CSV download
    READ_PREFERENCES = "read_preferences"
    WRITE_PREFERENCES = "write_preferences"
    VIEW_PERSONAL_DATA = "view_personal_data"  # unmasked names and phone numbers
    READ_BALANCE_ALERTS = "read_balance_alerts"  # the company's alerts and auto-recharge
    WRITE_BALANCE_ALERTS = "write_balance_alerts"
    READ_SPEND_CAPS = "read_spend_caps"  # the WABAs' caps in billings/info
    WRITE_SPEND_CAPS = "write_spend_caps"  # PUT wabas/{waba_id}/spend_cap


# SPEC section 5, the role table, verbatim.
_GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.VIEW_BILLING_INFO: frozenset(Role),
    Permission.VIEW_DEDUCTION_LOGS: frozenset({Role.OWNER, Role.ADMIN, Role.SUPERVISOR}),
    Permission.READ_PREFERENCES: frozenset({Role.OWNER, Role.ADMIN, Role.SUPERVISOR}),
    Permission.WRITE_PREFERENCES: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.VIEW_PERSONAL_DATA: frozenset({Role.OWNER, Role.ADMIN}),
    # SPEC section 5, balance_alerts: "owner and admin write, supervisor reads".
    Permission.READ_BALANCE_ALERTS: frozenset({Role.OWNER, Role.ADMIN, Role.SUPERVISOR}),
    Permission.WRITE_BALANCE_ALERTS: frozenset({Role.OWNER, Role.ADMIN}),
    # Rule 3.11 / issue 24: owners and admins set caps, supervisors read them, agents and members do not see them.
    Permission.READ_SPEND_CAPS: frozenset({Role.OWNER, Role.ADMIN, Role.SUPERVISOR}),
    Permission.WRITE_SPEND_CAPS: frozenset({Role.OWNER, Role.ADMIN}),
}


def allowed(role: Role, permission: Permission) -> bool:
    """Whether the role holds the permission (SPEC section 5)."""
    return role in _GRANTS[permission]


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified bearer: the company always comes from here, never from the request."""

    company_id: int
    role: Role
    subject: str | None = None
