"""One module per wire format; `get_adapter` picks it by the kind's registry entry."""

from importlib import import_module
from types import ModuleType

from ..kinds import get_kind


def get_adapter(kind: str) -> ModuleType:
    return import_module(f"{__name__}.{get_kind(kind).adapter}")
