"""The playground's side panels: what a conversation has cost so far, and the request being written as code."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from aspweb.roles import role_required

from . import services, snippets
from .forms import ChatForm
from .views import VIEWERS, _get_conversation_for_user, composer_turns


@require_GET
@role_required(*VIEWERS)
def conversation_cost(request: HttpRequest, pk: int) -> HttpResponse:
    """The conversation's running cost; the heading asks again after each answer."""
    conversation = _get_conversation_for_user(pk, request.user)
    return render(request, "playground/tools.html#cost", {"conversation": conversation})


def _base_url(request: HttpRequest) -> str:
    """Where applications reach aspweb: ASPWEB_SITE_URL when set, else the address this page came from."""
    return (settings.SITE_URL or request.build_absolute_uri("/")).rstrip("/")


@require_POST
@role_required(*VIEWERS)
def request_code(request: HttpRequest) -> HttpResponse:
    """The composer's request (its models, the conversation so far, the parameters and the prompt) as
    curl, Python and JavaScript calls of the gateway."""
    form = ChatForm(request.POST, catalog=services.catalog(), prompt_required=False)
    found: list[snippets.Snippets] = []
    if form.is_valid():
        found = snippets.snippets(models=form.models, params=form.params, prompt=form.cleaned_data["prompt"],
                                  turns=composer_turns(form, request.user, edit_needs_prompt=True),
                                  base_url=_base_url(request))
    keys_url = _base_url(request) + reverse("apikey_list")
    return render(request, "playground/tools.html#code", {"snippets": found, "keys_url": keys_url,
                                                     "key_variable": snippets.KEY_VARIABLE})
