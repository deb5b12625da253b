"""How the provider pages word what they show: times, counts, empty values, help texts."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from gateway.forms import RouteForm
from gateway.models import ApiKey
from providers.forms import CatalogModelForm, ProviderForm
from providers.kinds import KINDS
from providers.models import Model, Provider
from providers.templatetags.when import ago, exact, iso

NOW = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(("before", "words"), [
    (timedelta(0), "just now"),
    (timedelta(seconds=59), "just now"),
    (timedelta(seconds=-5), "just now"),  # a clock a little ahead
    (timedelta(seconds=60), "1 minute ago"),
    (timedelta(minutes=2, seconds=30), "2 minutes ago"),
    (timedelta(hours=1), "1 hour ago"),
    (timedelta(hours=5, minutes=59), "5 hours ago"),
    (timedelta(days=1), "1 day ago"),
    (timedelta(days=29), "29 days ago"),
    (timedelta(days=45), "on 2026-10-21"),
])
def test_ago_says_how_long_ago_in_whole_units(before: timedelta, words: str) -> None:
    assert ago(NOW - before, NOW) == words


def test_exact_and_iso_keep_to_the_second() -> None:
    when = NOW.replace(second=6, microsecond=34159)
    assert exact(when) == "2026-12-05 14:30:06 UTC"
    assert iso(when) == "2026-12-05T14:30:06+00:00"
    assert ago(None) == exact(None) == iso(None) == ""


@pytest.mark.django_db
@pytest.mark.parametrize(("checked", "words"), [(timedelta(seconds=3), "Last checked just now"),
                                                (timedelta(minutes=2), "Last checked 2 minutes ago")])
def test_the_provider_page_says_when_it_was_last_checked(admin_client: Client, checked: timedelta,
                                                         words: str) -> None:
    provider = Provider.objects.create(name="lab", kind="ollama", last_checked_at=timezone.now() - checked,
                                       last_check_ok=True, last_check_message="Connected.")
    html = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert f"{words}: Connected." in text
    assert "0 minutes" not in text


@pytest.mark.django_db
@pytest.mark.parametrize(("retries", "words"), [(0, "10 s, 0 retries"), (1, "10 s, 1 retry"),
                                                (3, "10 s, 3 retries")])
def test_the_time_limit_counts_retries_in_words(admin_client: Client, retries: int, words: str) -> None:
    provider = Provider.objects.create(name="lab", kind="ollama", timeout_seconds=10, max_retries=retries)
    html = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert f"<dd>{words}</dd>" in html


@pytest.mark.django_db
def test_the_catalog_shows_a_dash_for_an_unknown_context_and_separates_thousands(admin_client: Client) -> None:
    provider = Provider.objects.create(name="lab", kind="ollama")
    Model.objects.create(provider=provider, name="unknown")
    Model.objects.create(provider=provider, name="known", context_window=1_048_576)
    html = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert "None" not in html
    assert cells[:2] == ["1,048,576", "—"]  # known, then unknown, by name


@pytest.mark.django_db
def test_lists_show_times_without_microseconds(admin_client: Client) -> None:
    checked = (timezone.now() - timedelta(hours=3, minutes=5)).replace(microsecond=123456)
    Provider.objects.create(name="lab", kind="ollama", last_checked_at=checked, last_check_ok=True)
    ApiKey.objects.create(name="app", prefix="ask-abcdefgh", key_hash="x" * 64, last_used_at=checked)
    for page in ("provider_list", "apikey_list"):
        html = admin_client.get(reverse(page)).content.decode()
        assert "123456" not in html, page
        assert f'datetime="{iso(checked)}"' in html and f'title="{exact(checked)}"' in html, page
        assert ">3 hours ago</time>" in html, page


@pytest.mark.django_db
def test_help_texts_have_no_markdown_backticks() -> None:
    kind = KINDS["cloudflare"]
    texts = [field.help_text for form in (ProviderForm(kind=kind), ProviderForm(kind=KINDS["claude_cli"]),
                                          CatalogModelForm(provider=Provider(name="lab")), RouteForm())
             for field in form.fields.values()]
    texts += [kind.help for kind in KINDS.values()]
    assert any("wrangler whoami" in str(text) for text in texts)  # the texts that had backticks are here
    assert not [text for text in texts if "`" in str(text)]


def test_a_providers_own_settings_are_named_as_the_form_names_them(admin_client: Client) -> None:
    azure = Provider.objects.create(name="az", kind="azure_openai", base_url="https://r.openai.azure.com",
                                    api_key="azure-key-0001", extra={"api_version": "2024-10-21"})
    router = Provider.objects.create(name="or", kind="openrouter", api_key="sk-or-0002",
                                     extra={"referer": "", "title": "Team <app>"})
    page = admin_client.get(reverse("provider_detail", args=[azure.pk])).content.decode()
    assert "<dt>API version</dt><dd>2024-10-21</dd>" in page and "api_version" not in page
    page = admin_client.get(reverse("provider_detail", args=[router.pk])).content.decode()
    assert "<dt>X-Title</dt><dd>Team &lt;app&gt;</dd>" in page
    assert "HTTP-Referer" not in page and ">referer<" not in page and ">title<" not in page  # blank: not shown


@pytest.mark.parametrize(("key", "shown", "help_text"), [
    ("sk-long-key-4321", "stored, ends in <code>4321</code>", "Stored key ends in 4321; leave blank to keep it."),
    # Too short to show any of it: said so, not "ends in …".
    ("short", "<dd>stored</dd>", "A key is stored; leave blank to keep it."),
])
def test_a_stored_key_is_described_whatever_its_length(admin_client: Client, key: str, shown: str,
                                                       help_text: str) -> None:
    provider = Provider.objects.create(name="lab", kind="openai_compatible", base_url="http://127.0.0.1:9/v1",
                                       api_key=key)
    page = admin_client.get(reverse("provider_detail", args=[provider.pk])).content.decode()
    assert shown in page and "ends in <code>…" not in page
    provider.refresh_from_db()  # loaded, the key is a Secret, as the edit page has it
    form = ProviderForm(instance=provider, kind=KINDS["openai_compatible"])
    assert form.fields["api_key"].help_text == help_text
