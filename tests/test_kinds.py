"""Every preset in the registry, spelled out, so a typo in an entry fails here."""

import pytest

from providers.adapters import get_adapter
from providers.kinds import EXTRA_FIELDS, KINDS, get_kind
from providers.models import Provider
from providers.services import connection_for

EXPECTED = {
    # kind: (adapter, default base URL, key, base URL need, extra fields)
    "anthropic": ("anthropic", "https://api.anthropic.com", "required", "optional", ()),
    "openai": ("openai_compat", "https://api.openai.com/v1", "required", "optional", ()),
    "azure_openai": ("openai_compat", "", "required", "required", ("api_version",)),
    "openrouter": ("openai_compat", "https://openrouter.ai/api/v1", "required", "optional", ("referer", "title")),
    "gemini": ("openai_compat", "https://generativelanguage.googleapis.com/v1beta/openai/", "required", "optional",
               ()),
    "groq": ("openai_compat", "https://api.groq.com/openai/v1", "required", "optional", ()),
    "together": ("openai_compat", "https://api.together.xyz/v1", "required", "optional", ()),
    "fireworks": ("openai_compat", "https://api.fireworks.ai/inference/v1", "required", "optional", ()),
    "deepinfra": ("openai_compat", "https://api.deepinfra.com/v1/openai", "required", "optional", ()),
    "cohere": ("openai_compat", "https://api.cohere.ai/compatibility/v1", "required", "optional", ()),
    "cloudflare": ("cloudflare", "https://api.cloudflare.com/client/v4", "required", "optional", ("account_id",)),
    "ollama": ("openai_compat", "http://localhost:11434/v1", "none", "optional", ()),
    "vllm": ("openai_compat", "http://localhost:8000/v1", "none", "optional", ()),
    "openai_compatible": ("openai_compat", "", "optional", "required", ()),
    "claude_cli": ("claude_cli", "", "none", "none", ()),
    "ruvllm": ("ruvllm", "http://localhost:3000", "none", "optional", ()),
    "bedrock": ("bedrock", "", "optional", "optional", ("aws_region", "aws_access_key_id")),
    "vertex": ("vertex", "", "required", "optional", ("project", "region")),
}


def test_registry_has_exactly_the_expected_kinds() -> None:
    assert set(KINDS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset(name: str) -> None:
    kind = get_kind(name)
    adapter, base_url, key, base_url_need, extra = EXPECTED[name]
    assert (kind.adapter, kind.base_url, kind.api_key, kind.base_url_need, kind.extra) == (
        adapter, base_url, key, base_url_need, extra)
    module = get_adapter(name)
    for function in ("stream", "complete", "list_models", "health_check"):
        assert callable(getattr(module, function, None)), f"{adapter} lacks {function}"
    assert all(field in EXTRA_FIELDS for field in kind.extra)


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known kinds: anthropic, openai"):
        get_kind("nope")


def test_openrouter_headers_and_base_url_reach_the_connection() -> None:
    provider = Provider(name="or", kind="openrouter", api_key="sk-or-1",
                        extra={"referer": "https://team.example", "title": "Team"})
    connection = connection_for(provider)
    assert connection.base_url == "https://openrouter.ai/api/v1"
    assert connection.headers == {"HTTP-Referer": "https://team.example", "X-Title": "Team"}
    assert connection.api_key == "sk-or-1"
    assert "sk-or-1" not in repr(connection)


def test_a_set_base_url_wins_over_the_preset() -> None:
    provider = Provider(name="g", kind="groq", base_url="https://proxy.example/groq/v1")
    assert connection_for(provider).base_url == "https://proxy.example/groq/v1"
