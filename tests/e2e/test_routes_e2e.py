"""A route's page as an admin meets it: what the route is, and its deployments' table."""

from collections.abc import Callable

from playwright.sync_api import Dialog, Page, expect

from accounts.models import User
from gateway.models import Deployment, Route
from providers.models import Model, Provider


def _route() -> tuple[Route, Deployment]:
    provider = Provider.objects.create(name="local", kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(provider=provider, name="fake-model-a")
    route = Route.objects.create(name="fast-chat", cache_ttl_seconds=2_592_000, description="<i>Cheap</i> & fast")
    return route, Deployment.objects.create(route=route, model=model, priority=0, weight=1)


def test_a_route_says_what_it_is_and_removing_a_deployment_asks_first(
        make_user: Callable[..., User], sign_in: Callable[..., Page]) -> None:
    route, deployment = _route()
    page = sign_in(make_user("admin"), next_path=f"/routes/{route.pk}/")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("fast-chat: what applications put in “model”")
    expect(facts).to_contain_text("identical requests answered from the cache for 2,592,000 s")
    expect(facts).to_contain_text("<i>Cheap</i> & fast")  # the description as text, never markup

    # The actions cell stays a cell of its row: flex took it out of the row's borders.
    cell = page.locator("table.data td.actions").first
    assert cell.evaluate("td => getComputedStyle(td).display") == "table-cell"
    row = page.locator("table.data tbody tr").first
    assert abs(cell.bounding_box()["height"] - row.bounding_box()["height"]) < 1

    questions: list[str] = []

    def answer(dialog: Dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("button", name="Remove")).to_be_visible()
    assert Deployment.objects.filter(pk=deployment.pk).exists()

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    with page.expect_navigation():
        page.get_by_role("button", name="Remove").click()
    assert questions == ["Remove local/fake-model-a from route fast-chat?"] * 2
    assert not Deployment.objects.filter(pk=deployment.pk).exists()


def test_the_route_form_names_the_cache_setting_in_words(make_user: Callable[..., User],
                                                           sign_in: Callable[..., Page]) -> None:
    page = sign_in(make_user("admin"), next_path="/routes/add/")
    expect(page.get_by_label("Cache answers for (seconds)")).to_have_value("0")
    expect(page.get_by_text("Cache ttl seconds")).to_have_count(0)
