"""The staff roles: the Operators and Auditors groups with their permissions.

Operators manage tenants and API credentials and run the job actions; Auditors
view everything and change nothing. The permission lists are frozen here as
they were when the groups were introduced; ``accounts.services.staff_roles_sync``
holds the current ones and puts them back (``create_staff_user`` calls it).
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

AUDITOR_PERMISSIONS = [
    "accounts.view_tenant",
    "accounts.view_apicredential",
    "restores.view_job",
    "restores.view_numberresult",
    "restores.view_upstreamattempt",
    "restores.view_webhookdelivery",
    "admin.view_logentry",
]
OPERATOR_PERMISSIONS = [
    *AUDITOR_PERMISSIONS,
    "accounts.add_tenant",
    "accounts.change_tenant",
    "accounts.change_apicredential",
    "restores.operate_job",
]
GROUPS = {"Operators": OPERATOR_PERMISSIONS, "Auditors": AUDITOR_PERMISSIONS}


def create_groups(apps, schema_editor):  # type: ignore[no-untyped-def]
    alias = schema_editor.connection.alias
    # Permissions are normally created after the last migration (post_migrate);
    # create them now so that the groups can be given them on a fresh database.
    for label in ("admin", "accounts", "restores"):
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=alias, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUPS.items():
        group, _ = Group.objects.using(alias).get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.append(
                Permission.objects.using(alias).get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)


def delete_groups(apps, schema_editor):  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_cache_table"),
        ("restores", "0004_job_operate_permission"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
