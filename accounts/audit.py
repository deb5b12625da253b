"""Writing the audit log. Callers pass names of changed fields and safe values only."""

from typing import Any

from django.db import models

from .models import AuditEvent


def audit_log(actor: Any, action: str, target: models.Model | None = None, *, target_type: str = "",
              target_label: str = "", **details: Any) -> AuditEvent:
    if target is not None:
        target_type = target_type or target._meta.model_name or ""
        target_label = target_label or str(target)
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor=actor if is_user else None,
        actor_label=actor.email if is_user else (str(actor) if actor else "system"),
        action=action,
        target_type=target_type,
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_label=target_label[:254],
        details=details,
    )
