"""Staff two-factor in tests: a staff user's TOTP device, and the code it shows now."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


def add_totp_device(user: AbstractBaseUser, name: str = "phone") -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True)


def totp_code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code the device's authenticator app shows now (or ``steps_ahead`` 30 s steps later)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = totp.time + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    """A code that none of the device's accepted steps (now, just before, just after) shows."""
    accepted = {totp_code(device, steps_ahead=k) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)
