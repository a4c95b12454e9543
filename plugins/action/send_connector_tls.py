# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""send_connector_tls: cloud connectors name the best trusted certificate (_plan.plan_send_connector_tls)."""

from __future__ import annotations

import functools

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _enforce_action, _plan

ARGUMENT_SPEC = dict(
    receive_connectors=dict(type="bool", default=False),
    **_args.ENFORCE_SPEC,
)


class ActionModule(_enforce_action.EnforceAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def planner(self, args):
        # The certificate states in the result use smtp_certificate's defaults, so that both modules
        # call the same certificate "mitigated" once the connectors are pinned.
        return functools.partial(_plan.plan_send_connector_tls, receive_connectors=args["receive_connectors"]), _plan.SmtpOptions()
