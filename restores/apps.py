from typing import Any

from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Bulk restores"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from portal.metrics import metrics_collector_register
        from restores.cluster import sentinel_signals_install
        from restores.metrics import RestoresCollector

        metrics_collector_register(RestoresCollector)
        sentinel_signals_install()  # a qcluster stops in order, whichever process gets SIGTERM
        post_spawn.connect(_worker_started, dispatch_uid="restores.recover")


def _worker_started(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    """A django-q2 worker process started: SIGTERM is to make it finish up (restores.cluster),
    and a recovery sweep is queued (restore queue only)."""
    from django.conf import settings

    from restores.cluster import worker_signals_install
    from restores.services.queue import enqueue

    worker_signals_install()
    if settings.Q_QUEUE == "restores":
        enqueue("restores.tasks.recover")
