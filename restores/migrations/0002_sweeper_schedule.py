"""Install the sweeper as a django-q2 schedule (runs every minute on any cluster)."""

from django.db import migrations

SWEEP_FUNC = "restores.tasks.sweep"


def install(apps, schema_editor):  # type: ignore[no-untyped-def]
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="restores-sweeper",
        defaults={"func": SWEEP_FUNC, "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def uninstall(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_q", "Schedule").objects.filter(name="restores-sweeper").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("restores", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
