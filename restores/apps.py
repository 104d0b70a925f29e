from django.apps import AppConfig


class RestoresConfig(AppConfig):
    name = "restores"
    verbose_name = "Bulk restores"

    def ready(self) -> None:
        from portal.metrics import metrics_collector_register
        from restores.metrics import RestoresCollector

        metrics_collector_register(RestoresCollector)
