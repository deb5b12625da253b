from django.contrib import admin

from .models import AlertEvent, Budget, BudgetPeriod, Delivery


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["name", "scope", "period", "amount", "hard_limit", "forecast"]
    list_filter = ["scope", "period", "hard_limit"]


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(admin.ModelAdmin):
    list_display = ["budget", "start", "end", "spent", "reserved"]


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "budget", "kind", "threshold", "spent", "notified"]
    list_filter = ["kind"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["alert", "channel", "status", "attempts", "last_error", "updated_at"]
    list_filter = ["channel", "status"]
