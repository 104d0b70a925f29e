"""Staff admin for jobs and their audit trail, the overview page and the tenants' activity.

One concern per module: ``base`` (what the lists share, and the rules they keep), ``filters``,
``jobs`` (JobAdmin and its actions), ``audit`` (numbers, upstream attempts, webhook deliveries),
``overview`` and ``charts`` (the overview page), ``export`` (CSV) and ``tenants`` (the tenant
list with its activity). Importing them registers the ModelAdmins.
"""

from restores.admin import audit, base, charts, export, filters, jobs, overview, tenants  # noqa: F401
