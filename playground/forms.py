from collections.abc import Sequence
from typing import Any

from django import forms

from aspweb.forms import BoundedIntegerField, range_message
from aspweb.money import usd
from providers.models import Model

from .models import Conversation
from .services import MAX_LANES, Params

MAX_STOP_SEQUENCES = 4
COMPARE_FIELDS = tuple(f"compare_{n}" for n in range(1, MAX_LANES))


def model_label(model: Model) -> str:
    price = model.price_now
    prices = f"{usd(price.input, 12)} in / {usd(price.output, 12)} out per 1M" if price else "no price set"
    # The provider first: two providers may offer models of the same name, and a closed picker shows
    # only the chosen option's text, not its group.
    return f"{model.provider.name} · {model.label} · {prices}"


def _range_errors(low: int, high: int) -> dict[str, str]:
    """A decimal parameter's out-of-range message, the one every bounded number in aspweb gives."""
    return {"min_value": range_message(low, high), "max_value": range_message(low, high),
            "invalid": "Enter a number."}


class ChatForm(forms.Form):
    """The composer: one model, or up to four to compare, the parameters, and the prompt."""

    conversation = forms.IntegerField(required=False, widget=forms.HiddenInput)
    # Set by the page's script when the member edits the last prompt: the send replaces that turn.
    edit_last = forms.BooleanField(required=False, widget=forms.HiddenInput)
    model = forms.TypedChoiceField(label="Model", coerce=int)
    compare_1 = forms.TypedChoiceField(label="Model 2", coerce=int, required=False, empty_value=None)
    compare_2 = forms.TypedChoiceField(label="Model 3", coerce=int, required=False, empty_value=None)
    compare_3 = forms.TypedChoiceField(label="Model 4", coerce=int, required=False, empty_value=None)
    system = forms.CharField(label="System prompt", required=False,
                             widget=forms.Textarea(attrs={"rows": 2, "placeholder": "You are a helpful assistant."}))
    temperature = forms.FloatField(label="Temperature", required=False, min_value=0, max_value=2,
                                   error_messages=_range_errors(0, 2),
                                   widget=forms.NumberInput(attrs={"step": "0.1", "placeholder": "default"}))
    max_tokens = BoundedIntegerField(label="Max tokens", min_value=1, max_value=1_000_000, initial=1024)
    top_p = forms.FloatField(label="Top p", required=False, min_value=0, max_value=1,
                             error_messages=_range_errors(0, 1),
                             widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": "default"}))
    stop = forms.CharField(label="Stop sequences", required=False, strip=False, help_text="One per line, at most 4.",
                           widget=forms.Textarea(attrs={"rows": 2}))
    prompt = forms.CharField(label="Prompt", widget=forms.Textarea(attrs={
        "rows": 3, "placeholder": "Ask something. Enter sends, Shift+Enter starts a new line.",
    }))

    team = forms.TypedChoiceField(label="Team", coerce=int, required=False, empty_value=None,
                                  help_text="The team these calls are counted for.")

    def __init__(self, *args: Any, catalog: Sequence[Model], prompt_required: bool = True,
                 teams: Sequence[Any] = (), **kwargs: Any) -> None:
        """`teams`: the person's teams. With one, their calls count for it; with several, they pick (their
        first by default); with none, the field is left out."""
        super().__init__(*args, **kwargs)
        self.teams = list(teams)
        if self.teams:
            self.fields["team"].choices = [(team.pk, team.name) for team in self.teams] + [("", "No team")]
            if self.fields["team"].initial is None and "team" not in self.initial:
                self.initial["team"] = self.teams[0].pk
        else:
            del self.fields["team"]
        self.catalog = {model.pk: model for model in catalog}
        groups: dict[str, list[tuple[int, str]]] = {}
        for model in catalog:
            groups.setdefault(model.provider.name, []).append((model.pk, model_label(model)))
        choices = list(groups.items())
        self.fields["model"].choices = [("", "Choose a model…"), *choices]
        for name in COMPARE_FIELDS:
            self.fields[name].choices = [("", "—"), *choices]
        self.fields["prompt"].required = prompt_required

    def compare_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in COMPARE_FIELDS]

    def number_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("temperature", "max_tokens", "top_p")]

    def clean_stop(self) -> list[str]:
        sequences = [line for line in self.cleaned_data["stop"].splitlines() if line.strip()]
        if len(sequences) > MAX_STOP_SEQUENCES:
            raise forms.ValidationError(f"At most {MAX_STOP_SEQUENCES} stop sequences.")
        return sequences

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        chosen = [data[name] for name in ("model", *COMPARE_FIELDS) if data.get(name) is not None]
        if len(set(chosen)) != len(chosen):
            raise forms.ValidationError("Pick each model once: the panes compare different models.")
        self.models = [self.catalog[pk] for pk in chosen]
        return data

    @property
    def params(self) -> Params:
        data = self.cleaned_data
        return Params(system=data["system"], temperature=data["temperature"], top_p=data["top_p"],
                      max_tokens=data["max_tokens"], stop=tuple(data["stop"]),
                      team_id=data.get("team") if self.teams else None)

    @staticmethod
    def initial_for(conversation: Any, models: Sequence[Model]) -> dict[str, Any]:
        """The composer as a conversation was last sent: its parameters and the models of its last turn."""
        initial: dict[str, Any] = {"conversation": conversation.pk, "system": conversation.system,
                                   "temperature": conversation.temperature, "top_p": conversation.top_p,
                                   "max_tokens": conversation.max_tokens, "stop": "\n".join(conversation.stop),
                                   "team": conversation.team_id}
        for name, model in zip(("model", *COMPARE_FIELDS), models, strict=False):
            initial[name] = model.pk
        return initial


class RenameForm(forms.Form):
    """A conversation's new title: spaces and line breaks collapse to single spaces, then it must fit."""

    # No max_length here: the limit counts the title once its spaces have collapsed.
    title = forms.CharField(label="Title", strip=False, error_messages={"required": "Give the conversation a title."})

    def clean_title(self) -> str:
        title = " ".join(self.cleaned_data["title"].split())
        if not title:
            raise forms.ValidationError("Give the conversation a title.")
        limit = Conversation.TITLE_MAX_LENGTH
        if len(title) > limit:
            raise forms.ValidationError(f"A title has at most {limit} characters; this one has {len(title)}.")
        return title
