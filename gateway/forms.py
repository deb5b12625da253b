"""The forms of routes and their deployments (API keys': apikey_forms.py)."""

from typing import Any

from django import forms

from aspweb.forms import bounded_formfield
from providers.models import Model

from .models import ROUTE_NAME_MAX, Deployment, Route


class RouteForm(forms.ModelForm):
    class Meta:
        formfield_callback = bounded_formfield
        model = Route
        fields = ["name", "strategy", "enabled", "cache_ttl_seconds", "description"]
        labels = {"cache_ttl_seconds": "Cache answers for (seconds)"}
        help_texts = {"name": f"What applications put in “model”, e.g. fast-chat; at most {ROUTE_NAME_MAX} "
                              "characters."}


class DeploymentForm(forms.ModelForm):
    class Meta:
        formfield_callback = bounded_formfield
        model = Deployment
        fields = ["model", "priority", "weight"]

    def __init__(self, *args: Any, route: Route, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.route = route
        self.fields["model"].queryset = Model.objects.filter(
            enabled=True, provider__enabled=True, provider__archived_at__isnull=True
        ).select_related("provider").order_by("provider__name", "name")

    def clean_model(self) -> Model:
        # `route` is not a form field, so the form alone would not check the unique constraint.
        model = self.cleaned_data["model"]
        if Deployment.objects.filter(route=self.instance.route, model=model).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This model already serves the route.")
        return model
