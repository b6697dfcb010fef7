"""The approval page upkeep serves to customers: decide a gate from the e-mail's link.

The provider exposes this small application (behind its TLS reverse proxy), never the Prefect
API. Each approver's e-mail carries a personal link (:mod:`upkeep.tasks.approval_links`); the
page shows what is asked and sends the decision to the waiting run server-side, through the
same resume call and the same rules as every other answer (:mod:`upkeep.approvals_cli`), then
shows what the flow made of it. :mod:`upkeep.web.guard` adds the security headers, the size
limit and the token-free access log; :mod:`upkeep.web.app` has the routes;
:mod:`upkeep.web.server` runs it (``upkeep approvals serve``, or inside ``upkeep serve``).
"""
