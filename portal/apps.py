from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalConfig(AppConfig):
    default = True  # the config of the "portal" entry in INSTALLED_APPS
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import checks  # noqa: F401  (registers the system checks)


class StaffAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the staff site (two-factor aware) as ``admin.site``.

    Every ``@admin.register`` and ``admin.site.register`` of every app lands on it, so all
    ModelAdmins and their URLs (``admin:…``) stay as they are.
    """

    default = False  # named in INSTALLED_APPS by its path, in place of django.contrib.admin
    default_site = "portal.admin_site.StaffAdminSite"
