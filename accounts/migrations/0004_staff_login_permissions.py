"""The staff roles' permissions on staff logins: axes' lockouts and logs, TOTP devices.

Auditors view lockouts (axes' access attempts), the access log, the failure log and who has
a TOTP device (never its key). Operators also lift lockouts (delete an access attempt) and
add, change (show the QR code of) and delete TOTP devices. Frozen here as introduced;
``accounts.services.staff_roles_sync`` holds the current lists.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

AUDITOR_PERMISSIONS = [
    "axes.view_accessattempt",
    "axes.view_accesslog",
    "axes.view_accessfailurelog",
    "otp_totp.view_totpdevice",
]
OPERATOR_PERMISSIONS = [
    *AUDITOR_PERMISSIONS,
    "axes.delete_accessattempt",
    "otp_totp.add_totpdevice",
    "otp_totp.change_totpdevice",
    "otp_totp.delete_totpdevice",
]
GROUPS = {"Operators": OPERATOR_PERMISSIONS, "Auditors": AUDITOR_PERMISSIONS}


def _permissions(apps, alias, perms):  # type: ignore[no-untyped-def]
    Permission = apps.get_model("auth", "Permission")
    found = []
    for perm in perms:
        app_label, codename = perm.split(".")
        found.append(
            Permission.objects.using(alias).get(content_type__app_label=app_label, codename=codename)
        )
    return found


def add_permissions(apps, schema_editor):  # type: ignore[no-untyped-def]
    alias = schema_editor.connection.alias
    # Permissions are normally created after the last migration (post_migrate).
    for label in ("axes", "otp_totp"):
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=alias, apps=apps)
    Group = apps.get_model("auth", "Group")
    for name, perms in GROUPS.items():
        group, _ = Group.objects.using(alias).get_or_create(name=name)
        group.permissions.add(*_permissions(apps, alias, perms))


def remove_permissions(apps, schema_editor):  # type: ignore[no-untyped-def]
    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    for name, perms in GROUPS.items():
        group = Group.objects.using(alias).filter(name=name).first()
        if group is not None:
            group.permissions.remove(*_permissions(apps, alias, perms))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_staff_groups"),
        ("axes", "0010_accessattemptexpiration"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
