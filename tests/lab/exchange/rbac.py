"""Exchange RBAC, as far as the collection reads it: Get-ManagementRole -Cmdlet and Get-ManagementRoleAssignment.

Shapes follow Microsoft's cmdlet reference (office-docs-powershell, Get-ManagementRole.md and
Get-ManagementRoleAssignment.md): -Cmdlet "returns a list of all roles that include the specified
cmdlet"; -RoleAssignee returns "both direct role assignments to the role assignee, and indirect role
assignments granted to a role assignee through role groups"; -Delegating $true/$false selects delegating
or regular assignments; -Role filters by role. Assignment names are "<role>-<role group>" and
"<role>-<role group>-Delegating", as they appear under CN=Role Assignments,CN=RBAC in Active Directory.

Which built-in role holds which of the collection's cmdlets is the lab's model, from the Exchange 2013
help ("Built-in management roles"; "Exchange Connectors role": "To manage Send and Receive connectors,
use the Send Connectors and Receive Connectors roles"; "View-Only Configuration" has a configuration
read scope only). The role holding Get-HybridConfiguration is assumed to be Organization Configuration
(not documented per cmdlet; a real server answers Get-ManagementRole -Cmdlet Get-HybridConfiguration).
The collection never relies on this table: it asks the server.

Edge Transport servers "don't use Role Based Access Control (RBAC)" (Exchange 2013 help, "Mail flow
permissions"): their shell has no RBAC cmdlets, so both answer CommandNotFoundException there.

A remote PowerShell session (remote_exchange) imports only the cmdlets of the user's assigned roles (Microsoft
Learn, "Understanding Role Based Access Control": users "can only run the cmdlets ... assigned to the management
roles" they hold): another cmdlet of the table is no command there (imported(), CommandNotFoundException).
Cmdlets the table does not place are imported. Whether a snap-in session enforces RBAC is not modelled.

Fleet field (organization.rbac, overridden key by key by a server's rbac):
    rbac: {role_groups: [Organization Management], missing_roles: [Send Connectors]}
The session user - whatever identity -RoleAssignee names - is a member of role_groups (default
Organization Management); the assignments of missing_roles are absent (removed from those groups).
"""

from __future__ import annotations

from tests.lab.exchange import errors
from tests.lab.exchange.cmdlets import cmdlet
from tests.lab.exchange.params import Param

ROLE_CMDLETS = {
    "Exchange Servers": ("Get-ExchangeServer", "Get-TransportService"),
    "Exchange Server Certificates": ("Get-ExchangeCertificate", "Enable-ExchangeCertificate", "Remove-ExchangeCertificate"),
    "Send Connectors": ("Get-SendConnector", "Set-SendConnector"),
    "Receive Connectors": ("Get-ReceiveConnector", "Set-ReceiveConnector"),
    "Organization Configuration": ("Get-HybridConfiguration",),
    "Transport Queues": ("Get-Queue",),
    "View-Only Configuration": ("Get-ExchangeServer", "Get-ExchangeCertificate", "Get-TransportService", "Get-SendConnector",
                                "Get-ReceiveConnector", "Get-HybridConfiguration", "Get-Queue"),
    "Role Management": ("Get-ManagementRole", "Get-ManagementRoleAssignment"),
}
# RoleType values as Get-ManagementRole's -RoleType parameter lists them.
ROLE_TYPES = {
    "Exchange Servers": "ExchangeServers",
    "Exchange Server Certificates": "ExchangeServerCertificates",
    "Send Connectors": "SendConnectors",
    "Receive Connectors": "ReceiveConnectors",
    "Organization Configuration": "OrganizationConfiguration",
    "Transport Queues": "TransportQueues",
    "View-Only Configuration": "ViewOnlyConfiguration",
    "Role Management": "RoleManagement",
}
ROLE_GROUPS = {
    "Organization Management": tuple(ROLE_CMDLETS),
    "View-Only Organization Management": ("View-Only Configuration",),
    "Server Management": ("Exchange Servers", "Exchange Server Certificates", "Receive Connectors", "Transport Queues"),
}
DEFAULT = {"role_groups": ["Organization Management"], "missing_roles": []}


class RbacError(ValueError):
    """An rbac fleet field that does not follow the schema."""


def settings(organization_value, server_value, where: str) -> dict:
    """The effective rbac settings of one server (organisation keys, then the server's)."""
    merged = dict(DEFAULT)
    for place, value in (("organization.rbac", organization_value), ("%s.rbac" % where, server_value)):
        if value is None:
            continue
        if not isinstance(value, dict) or set(value) - set(DEFAULT):
            raise RbacError("%s: a mapping with role_groups and missing_roles" % place)
        merged.update(value)
    unknown = [group for group in merged["role_groups"] if group not in ROLE_GROUPS]
    if unknown:
        raise RbacError("%s: unknown role groups %s (known: %s)" % (where, ", ".join(unknown), ", ".join(ROLE_GROUPS)))
    unknown = [role for role in merged["missing_roles"] if role not in ROLE_CMDLETS]
    if unknown:
        raise RbacError("%s: unknown roles %s (known: %s)" % (where, ", ".join(unknown), ", ".join(ROLE_CMDLETS)))
    return merged


def _settings_of(server) -> dict:
    return getattr(server, "rbac", None) or DEFAULT


def _refuse_on_edge(server, name: str) -> None:
    if server.is_edge:
        raise errors.command_not_found(name)


def _role_object(name: str) -> dict:
    return {"Name": name, "Identity": name, "RoleType": ROLE_TYPES[name], "IsRootRole": True, "IsEndUserRole": False,
            "Parent": None}


@cmdlet("Get-ManagementRole", Param("Identity"), Param("Cmdlet"), Param("CmdletParameters", "strings"),
        Param("RoleType"), Param("DomainController"), Param("Recurse", "switch"), Param("GetChildren", "switch"))
def get_management_role(ctx, args):
    _refuse_on_edge(ctx.server, "Get-ManagementRole")
    names = list(ROLE_CMDLETS)
    if args.get("Identity"):
        wanted = args["Identity"].lower()
        names = [name for name in names if name.lower() == wanted]
        if not names:
            raise errors.object_not_found("Get-ManagementRole", args["Identity"], ctx.server.org.domain_controller)
    if args.get("Cmdlet"):
        wanted = args["Cmdlet"].lower()
        names = [name for name in names if wanted in (c.lower() for c in ROLE_CMDLETS[name])]
    if args.get("RoleType"):
        names = [name for name in names if ROLE_TYPES[name].lower() == args["RoleType"].lower()]
    return [_role_object(name) for name in names]


def imported(server, name: str) -> bool:
    """Whether a remote session of the user imports cmdlet name (see the module docstring)."""
    if not any(name in cmdlets for cmdlets in ROLE_CMDLETS.values()):
        return True
    return any(name in ROLE_CMDLETS[assignment["Role"]] for assignment in _assignments(server))


def _assignments(server) -> list:
    config = _settings_of(server)
    missing = set(config["missing_roles"])
    objects = []
    for group in config["role_groups"]:
        for role in ROLE_GROUPS[group]:
            if role in missing:
                continue
            for delegating in (False, True) if group == "Organization Management" else (False,):
                objects.append({
                    "Name": "%s-%s%s" % (role, group, "-Delegating" if delegating else ""),
                    "Identity": "%s-%s%s" % (role, group, "-Delegating" if delegating else ""),
                    "Role": role,
                    "RoleAssigneeName": group,
                    "RoleAssignee": group,
                    "RoleAssigneeType": "RoleGroup",
                    "AssignmentMethod": "RoleGroup",
                    "RoleAssignmentDelegationType": "DelegatingOrgWide" if delegating else "Regular",
                    "Enabled": True,
                    "RecipientWriteScope": "Organization",
                    "ConfigWriteScope": "OrganizationConfig",
                })
    return objects


@cmdlet("Get-ManagementRoleAssignment", Param("Identity"), Param("RoleAssignee"), Param("Role"),
        Param("Delegating", "bool"), Param("Enabled", "bool"), Param("AssignmentMethod", "strings"),
        Param("RoleAssigneeType"), Param("GetEffectiveUsers", "switch"), Param("DomainController"))
def get_management_role_assignment(ctx, args):
    _refuse_on_edge(ctx.server, "Get-ManagementRoleAssignment")
    if args.get("Identity") and args.get("RoleAssignee"):
        raise errors.parameter_error(
            "Get-ManagementRoleAssignment", "AmbiguousParameterSet",
            "Parameter set cannot be resolved using the specified named parameters.")
    objects = _assignments(ctx.server)
    if args.get("Role"):
        objects = [obj for obj in objects if obj["Role"].lower() == args["Role"].lower()]
    if "Delegating" in args and args["Delegating"] is not None:
        objects = [obj for obj in objects if (obj["RoleAssignmentDelegationType"] != "Regular") == args["Delegating"]]
    if "Enabled" in args and args["Enabled"] is not None:
        objects = [obj for obj in objects if obj["Enabled"] == args["Enabled"]]
    if args.get("Identity"):
        objects = [obj for obj in objects if obj["Name"].lower() == args["Identity"].lower()]
    return objects
