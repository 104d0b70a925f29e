"""Both staff roles view the upstream breakers' history (``restores.view_breakerevent``).

Frozen here as introduced; ``accounts.services.staff_roles_sync`` holds the current lists.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSION = ("restores", "view_breakerevent")
GROUPS = ("Operators", "Auditors")


def _permission(apps, alias):  # type: ignore[no-untyped-def]
    Permission = apps.get_model("auth", "Permission")
    app_label, codename = PERMISSION
    return Permission.objects.using(alias).get(content_type__app_label=app_label, codename=codename)


def add_permission(apps, schema_editor):  # type: ignore[no-untyped-def]
    alias = schema_editor.connection.alias
    # Permissions are normally created after the last migration (post_migrate).
    create_permissions(global_apps.get_app_config("restores"), verbosity=0, using=alias, apps=apps)
    Group = apps.get_model("auth", "Group")
    for name in GROUPS:
        group, _ = Group.objects.using(alias).get_or_create(name=name)
        group.permissions.add(_permission(apps, alias))


def remove_permission(apps, schema_editor):  # type: ignore[no-untyped-def]
    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.using(alias).filter(name__in=GROUPS):
        group.permissions.remove(_permission(apps, alias))


class Migration(migrations.Migration):
    dependencies = [
        ("restores", "0006_upstream_breaker"),
        ("accounts", "0004_staff_login_permissions"),
    ]

    operations = [migrations.RunPython(add_permission, remove_permission)]
