# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""smtp_certificate: only trusted certificates reach Exchange Online over SMTP (_plan.plan_smtp_certificate)."""

from __future__ import annotations

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _enforce_action


class ActionModule(_enforce_action.EnforceAction):
    ARGUMENT_SPEC = _enforce_action.SMTP_CERTIFICATE_SPEC

    def planner(self, args):
        return _enforce_action.smtp_certificate_planner(args)
