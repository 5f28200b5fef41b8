"""Errors raised by the encoders (all :class:`lsr.errors.LsrError`, one line each)."""

from __future__ import annotations

from lsr.errors import InputError, LsrError


class EncoderConfigError(InputError):
    """An invalid encoder configuration (a bad value, an unknown key, a bad preset file)."""


class UnknownEncoderError(LsrError):
    """An encoder spec that is no registered name, preset file, checkpoint directory or hub id."""


class ModelLoadError(LsrError):
    """A checkpoint that cannot be read or downloaded (missing files, no network for a hub id)."""


class IncompatibleModelError(LsrError):
    """A checkpoint that exists but does not fit the encoder (e.g. no MLM head for SPLADE)."""


class DeviceError(LsrError):
    """A device or dtype that this machine cannot provide."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception message, shortened, for one-line errors."""
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


__all__ = [
    "DeviceError",
    "EncoderConfigError",
    "IncompatibleModelError",
    "ModelLoadError",
    "UnknownEncoderError",
    "one_line",
]
