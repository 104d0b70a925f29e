from typing import Any

from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Bulk restores"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from portal.metrics import metrics_collector_register
        from restores.metrics import RestoresCollector

        metrics_collector_register(RestoresCollector)
        post_spawn.connect(_worker_started, dispatch_uid="restores.recover")


def _worker_started(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    """A django-q2 worker process started: queue a recovery sweep (restore queue only)."""
    from django.conf import settings

    from restores.services.queue import enqueue

    if settings.Q_QUEUE == "restores":
        enqueue("restores.tasks.recover")
