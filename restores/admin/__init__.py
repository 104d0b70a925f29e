"""Staff admin for jobs and their audit trail, the overview page and the tenants' activity.

One concern per module: ``base`` (what the lists share, and the rules they keep), ``filters``,
``jobs`` (JobAdmin and its actions), ``audit`` (numbers, upstream attempts, webhook deliveries),
``overview`` and ``charts`` (the overview page), ``export`` (CSV), ``tenants`` (the tenant
list with its activity) and ``breakers`` (the upstream breakers' history). Importing them
registers the ModelAdmins.
"""

from restores.admin import audit, base, breakers, charts, export, filters, jobs, overview, tenants  # noqa: F401
