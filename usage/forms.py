from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from django import forms
from django.db.models import Q, QuerySet

from accounts.models import Team, User
from aspweb.roles import ADMIN, has_role
from providers.models import Model, Provider

from . import bodies
from .attribution import END_USER_LENGTH_MAX, TAG_LENGTH_MAX, tag_q
from .dashboards import (
    CUSTOM,
    DEFAULT_GROUP,
    DEFAULT_PRESET,
    DEFAULT_SORT,
    DIMENSIONS,
    FILTERS,
    MAX_DAYS,
    PRESETS,
    SORT_KEYS,
    DateRange,
    Names,
    Selection,
    preset_range,
)
from .models import UsageRecord, api_key_model
from .services import day_start

ApiKey = api_key_model()


class DateInput(forms.DateInput):
    input_type = "date"


class CallFilterForm(forms.Form):
    """The filters of the calls list and the raw-records export. Dates are days in settings.TIME_ZONE,
    both ends included. They can select what a dashboard view counts (its days, provider, model, person,
    API key, team, source, tag and end user), so that the dashboard's count of unpriced calls links to
    exactly those calls."""

    provider = forms.ModelChoiceField(Provider.objects.all(), required=False, empty_label="All providers")
    model = forms.ModelChoiceField(Model.objects.select_related("provider"), required=False,
                                   empty_label="All models")
    user = forms.ModelChoiceField(User.objects.all(), required=False, empty_label="All users")
    api_key = forms.ModelChoiceField(ApiKey.objects.order_by("name", "prefix"), required=False, label="API key",
                                     empty_label="All API keys")
    source = forms.ChoiceField(choices=[("", "All sources"), *UsageRecord.Source.choices], required=False)
    team = forms.ModelChoiceField(Team.objects.order_by("name"), required=False, empty_label="All teams")
    tag = forms.CharField(required=False, max_length=TAG_LENGTH_MAX)
    end_user = forms.CharField(required=False, max_length=END_USER_LENGTH_MAX, label="End user")
    status = forms.ChoiceField(choices=[("", "All outcomes"), *UsageRecord.Status.choices], required=False)
    unpriced = forms.ChoiceField(choices=[("", "Priced or not"), ("true", "Without a price")], required=False,
                                 label="Price")
    date_from = forms.DateField(required=False, label="From", widget=DateInput)
    date_to = forms.DateField(required=False, label="To", widget=DateInput)
    q = forms.CharField(required=False, max_length=500, label="Search",
                        widget=forms.TextInput(attrs={"type": "search", "placeholder": "request id, error, words"}),
                        help_text="A request id, words of an error message, or words of logged prompts and answers.")

    def __init__(self, *args: Any, with_user: bool, owner: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Words of logged bodies find only the bodies the searcher may read: an admin's, everyone's; anyone
        # else's, their own calls' (a match would tell what another's prompt holds).
        self.owner, self.reads_all_bodies = owner, has_role(owner, ADMIN)
        if not with_user:  # people who see only their own calls have no one else to pick, nor others' keys
            del self.fields["user"]
            self.fields["api_key"].queryset = ApiKey.objects.filter(user=owner).order_by("name", "prefix")
            self.fields["team"].queryset = owner.teams.order_by("name")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def filter(self, records: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        data = self.cleaned_data
        for name in ("provider", "model", "user", "api_key", "team", "source", "status", "end_user"):
            if data.get(name):
                records = records.filter(**{name: data[name]})
        if data.get("tag"):
            records = records.filter(tag_q(data["tag"].strip().lower()))
        if data.get("unpriced"):
            records = records.filter(unpriced=True)
        # The calendar's first and last days bound nothing (and have no instant before or after them).
        if data.get("date_from") and data["date_from"] > date.min:
            records = records.filter(created_at__gte=day_start(data["date_from"]))
        if data.get("date_to") and data["date_to"] < date.max:
            records = records.filter(created_at__lt=day_start(data["date_to"] + timedelta(days=1)))
        if query := (data.get("q") or "").strip():
            records = records.filter(self._search(query))
        return records

    def _search(self, query: str) -> Q:
        """A request id finds its call; other text, the call the provider gave that id (its support quotes
        it), the calls whose error message holds it, or whose logged prompt and answer hold each of its words
        (usage/bodies.py: whole words, by their keyed hashes)."""
        try:
            return Q(request_id=UUID(query))
        except ValueError:
            pass
        found = Q(upstream_id=query) | Q(error_message__icontains=query)
        if tokens := bodies.query_tokens(query):
            in_body = Q()
            for token in tokens:
                in_body &= Q(body__search_tokens__contains=token)
            if not self.reads_all_bodies:
                in_body &= Q(user=self.owner)
            found |= in_body
        return found


class RepriceForm(forms.Form):
    since = forms.DateField(label="From", widget=DateInput, help_text="Days in the server's time zone.")
    until = forms.DateField(label="To (included)", required=False, widget=DateInput,
                            help_text="Empty: up to now.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def range(self) -> tuple[datetime, datetime | None]:
        """[since, until) as instants: from the start of the first day to the end of the last. The first and
        last days a calendar holds mean no bound (the day after the last does not exist, and either end
        overflows in a time zone away from UTC)."""
        since: date = max(self.cleaned_data["since"], date.min + timedelta(days=1))
        until: date | None = self.cleaned_data["until"]
        if until and until >= date.max - timedelta(days=1):
            until = None
        return day_start(since), day_start(until + timedelta(days=1)) if until else None


class DashboardForm(forms.Form):
    """The dashboard's query parameters. `range` picks a preset; `from`/`to` pick days (in TIME_ZONE, both
    included) and win over the preset when they differ from its days, so that the filter form, which
    always carries the days shown, turns into a custom range exactly when someone edits a date."""

    range = forms.ChoiceField(choices=[*PRESETS.items(), (CUSTOM, "Custom")], required=False)
    date_from = forms.DateField(required=False, label="From", widget=DateInput)
    date_to = forms.DateField(required=False, label="To", widget=DateInput)
    provider = forms.ModelChoiceField(Provider.objects.order_by("name"), required=False, empty_label="All providers")
    model = forms.ModelChoiceField(Model.objects.select_related("provider").order_by("provider__name", "name"),
                                   required=False, empty_label="All models")
    user = forms.ModelChoiceField(User.objects.order_by("email"), required=False, empty_label="All users")
    api_key = forms.ModelChoiceField(ApiKey.objects.order_by("name", "prefix"), required=False, label="API key",
                                     empty_label="All API keys")
    source = forms.ChoiceField(choices=[("", "All sources"), *UsageRecord.Source.choices], required=False)
    team = forms.ModelChoiceField(Team.objects.order_by("name"), required=False, empty_label="All teams")
    tag = forms.CharField(required=False, max_length=TAG_LENGTH_MAX)
    end_user = forms.CharField(required=False, max_length=END_USER_LENGTH_MAX, label="End user")
    group = forms.ChoiceField(choices=[(d.name, d.label) for d in DIMENSIONS.values()], required=False,
                              label="Group by")
    sort = forms.ChoiceField(choices=[(f"{d}{k}", k) for k in SORT_KEYS for d in ("", "-")], required=False)

    def __init__(self, data: Any, *, on: date, mine: User | None = None) -> None:
        super().__init__(data)
        self.on, self.mine = on, mine
        if mine is not None:
            # Their own rows only: no one else to pick or group by, and only their own keys.
            del self.fields["user"]
            self.fields["group"].choices = [c for c in self.fields["group"].choices if c[0] != "user"]
            self.fields["api_key"].queryset = ApiKey.objects.filter(user=mine).order_by("name", "prefix")
            self.fields["team"].queryset = mine.teams.order_by("name")

    def add_prefix(self, field_name: str) -> str:
        # `from` and `to` in URLs: short, and what people type; a field cannot be called `from`.
        return {"date_from": "from", "date_to": "to"}.get(field_name, field_name)

    def clean_tag(self) -> str:
        return self.cleaned_data["tag"].strip().lower()

    def clean_end_user(self) -> str:
        return self.cleaned_data["end_user"].strip()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        grouped = DIMENSIONS[data.get("group") or DEFAULT_GROUP].column
        if {grouped, *(c for n, c in FILTERS if c in ("tag", "end_user") and data.get(n))} >= {"tag", "end_user"}:
            # No rollup table has both (usage.rollups.table_for): it would cost a scan of the raw records.
            raise forms.ValidationError("Tags and end users cannot be combined in one view: filter or group by "
                                        "one of them at a time.")
        preset = data.get("range") or DEFAULT_PRESET
        shown = preset_range(DEFAULT_PRESET if preset == CUSTOM else preset, self.on)
        start, end = data.get("date_from"), data.get("date_to")
        if preset == CUSTOM or (start or shown.start, end or shown.end) != (shown.start, shown.end):
            end = end or max(start or self.on, self.on)
            start = start or max(end, date.min + timedelta(days=29)) - timedelta(days=29)
            if start > end:
                raise forms.ValidationError("The start date is after the end date.")
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(f"Choose at most {MAX_DAYS:,} days.")
            data["range_value"] = DateRange(start, end, CUSTOM)
        else:
            data["range_value"] = shown
        return data

    def selection(self) -> Selection:
        """The valid selection; call after is_valid()."""
        data = self.cleaned_data
        return Selection(
            range=data["range_value"], provider=data.get("provider"), model=data.get("model"),
            user=data.get("user"), api_key=data.get("api_key"), source=data.get("source") or "",
            team=data.get("team"), tag=data.get("tag") or "", end_user=data.get("end_user") or "",
            group=data.get("group") or DEFAULT_GROUP, sort=data.get("sort") or DEFAULT_SORT, mine=self.mine,
            names=self.names(),
        )

    def fallback(self) -> Selection:
        """The links of a page whose parameters are invalid: the default range, nothing else."""
        return Selection(range=preset_range(DEFAULT_PRESET, self.on), mine=self.mine, names=self.names())

    def names(self) -> Names:
        """The page's names: of everyone's API keys and teams, or on "My usage" the person's own."""
        if self.mine is None:
            return Names()
        return Names(ApiKey.objects.filter(user=self.mine), Team.objects.filter(members=self.mine))
