# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""smtp_certificate: only trusted certificates reach Exchange Online over SMTP (_plan.plan_smtp_certificate)."""

from __future__ import annotations

import functools

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _enforce_action, _plan

ARGUMENT_SPEC = dict(
    scope=dict(type="str", default="hybrid", choices=list(_plan.SCOPES)),
    exempt_thumbprints=dict(type="list", elements="str", default=[]),
    exempt_internal_transport=dict(type="bool", default=True),
    remove_untrusted=dict(type="bool", default=False),
    pin_connectors=dict(type="bool", default=True),
    **_args.ENFORCE_SPEC,
)


class ActionModule(_enforce_action.EnforceAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def planner(self, args):
        try:
            exempt = _args.thumbprints(args["exempt_thumbprints"]) if args["exempt_thumbprints"] else []
        except _args.OptionError as exc:
            raise _args.OptionError("exempt_thumbprints: %s" % exc) from None
        options = _plan.SmtpOptions(
            scope=args["scope"],
            exempt_thumbprints=frozenset(exempt),
            exempt_internal_transport=args["exempt_internal_transport"],
            remove_untrusted=args["remove_untrusted"],
            pin_connectors=args["pin_connectors"],
        )
        return functools.partial(_plan.plan_smtp_certificate, options=options), options
