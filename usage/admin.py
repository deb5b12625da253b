from django.contrib import admin

from .models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "source", "status", "provider_name", "model_name", "output_tokens", "cost"]
    list_filter = ["source", "status"]
    date_hierarchy = "created_at"
