"""The admin pages on a phone: a wide table scrolls sideways in its own box, and nothing else makes the page
wider than the screen."""

from collections.abc import Callable
from decimal import Decimal

from playwright.sync_api import Page

from accounts.audit import audit_log
from accounts.models import User
from gateway.models import Deployment, Route
from providers.models import Model, Price, Provider
from tests.gateway_support import make_key
from usage.services import usage_record_create

PHONE = 390


def test_the_admin_pages_keep_to_a_phones_width(make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    admin = make_user("admin")
    # A long name without spaces (the longest a name may be: 150 characters) and a long e-mail: what pushed
    # the users table past the page.
    User.objects.create_user("someone.with.a.rather.long.address@example.com", name="Ünïcødé-" + "x" * 142)
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fake-model-a")
    Price.objects.create(model=model, input=Decimal("0.15"), output=Decimal("0.6"))
    route = Route.objects.create(name="fast-chat", cache_ttl_seconds=300)
    Deployment.objects.create(route=route, model=model)
    make_key(admin, name="billing app", rpm_limit=100_000, tpm_limit=1_000_000_000)
    audit_log(admin, "route.create", route, name="fast-chat")

    page = sign_in(admin)
    page.set_viewport_size({"width": PHONE, "height": 800})
    for path in ("/providers/", f"/providers/{provider.pk}/", f"/models/{model.pk}/",
                 f"/providers/{provider.pk}/prices/?model={model.pk}", "/routes/", f"/routes/{route.pk}/",
                 "/users/", "/audit/", "/apikeys/", "/apikeys/add/", "/providers/add/openai_compatible/"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE, f"{path} is {width} px wide"
    # The users table itself is still all there, scrolling in its own box.
    page.goto("/users/")
    table = page.locator("table.users")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth && getComputedStyle(t).overflowX") == "auto"


def test_long_unbroken_names_are_cut_not_pushing_the_page_wider(make_user: Callable[..., User],
                                                                sign_in: Callable[..., Page]) -> None:
    """A name of one long word (a person's, a key's) is cut with an ellipsis and whole in its title."""
    admin = make_user("admin")
    long_name = "Ünïcødé-" + "x" * 140
    member = User.objects.create_user("member@example.com", name=long_name)
    make_key(member, name="k" * 100)
    provider = Provider.objects.create(name="lab", kind="openai_compatible",
                                       base_url="http://127.0.0.1:9/" + "segment" * 30 + "/v1")
    page = sign_in(admin)
    for path in ("/users/", "/apikeys/access/", "/apikeys/", f"/providers/{provider.pk}/"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"{path} is {width} px wide"
    page.goto("/apikeys/access/")
    assert page.locator(".truncate", has_text="Ünïcødé-").get_attribute("title") == long_name


def test_pages_of_two_cards_and_long_help_keep_to_a_phones_width(make_user: Callable[..., User],
                                                                sign_in: Callable[..., Page]) -> None:
    """A call's page and a model's re-pricing put two cards side by side on a wide screen: on a phone they stack,
    and their tables scroll in their own boxes instead of widening the page. A help text naming a long URL (a
    Gemini provider's default base URL) wraps."""
    admin = make_user("admin")
    provider = Provider.objects.create(name="gem", kind="gemini", base_url="")
    model = Model.objects.create(provider=provider, name="gemini-2.0-flash")
    Price.objects.create(model=model, input=Decimal("0.15"), output=Decimal("0.6"))
    key, _ = make_key(admin, name="research batch jobs")
    call = usage_record_create(provider=provider, model=model, status="ok", source="gateway", user=admin,
                               api_key=key, input_tokens=2, output_tokens=5, latency_ms=165, ttft_ms=24)
    page = sign_in(admin)
    page.set_viewport_size({"width": PHONE, "height": 800})
    for path in (f"/calls/{call.request_id}/", f"/models/{model.pk}/reprice/", f"/providers/{provider.pk}/edit/"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE, f"{path} is {width} px wide"
    page.goto(f"/calls/{call.request_id}/")
    table = page.locator("#token-classes")
    assert table.evaluate("t => getComputedStyle(t).overflowX") == "auto"
