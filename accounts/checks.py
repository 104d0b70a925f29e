"""System checks of the accounts settings: the addresses of trusted proxies."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from accounts.throttling import trusted_proxies_invalid


@register()
def check_trusted_proxies(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    invalid = trusted_proxies_invalid(settings.TRUSTED_PROXIES)
    if not invalid:
        return []
    return [
        Error(
            f"TRUSTED_PROXIES holds entries that are neither an address nor a network: {', '.join(invalid)}.",
            hint="List the reverse proxies' addresses or networks, comma-separated (10.0.0.5,10.1.0.0/16).",
            id="accounts.E001",
        )
    ]
