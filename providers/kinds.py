"""The registry of provider kinds: one entry per kind, naming its adapter and preset.

Adding a provider is one entry here plus, at most, one adapter module. Nothing outside this module and
the adapters branches on a kind's name.
"""

import re
from dataclasses import dataclass, field
from typing import Literal

Need = Literal["required", "optional", "none"]


@dataclass(frozen=True)
class ExtraField:
    label: str
    required: bool = False
    help: str = ""
    default: str = ""
    # Sent as this HTTP header on every request when set.
    header: str = ""
    # A value must match this (a regular expression) where set, or the form says `pattern_words`.
    pattern: str = ""
    pattern_words: str = ""


# Settings a kind may need beyond a key and a base URL; stored in Provider.extra.
EXTRA_FIELDS: dict[str, ExtraField] = {
    # Part of every request's path: nothing that could leave its place in the URL.
    "account_id": ExtraField("Cloudflare account ID", required=True,
                             help="The account that owns Workers AI (in the dashboard's URL, or printed by "
                                  "“wrangler whoami”).",
                             pattern=r"\A[A-Za-z0-9_-]{1,64}\Z",
                             pattern_words="Enter the account ID as Cloudflare shows it: letters and digits "
                                           "(32 of them), without spaces or slashes."),
    "api_version": ExtraField("API version", required=True, default="2024-10-21",
                              help="Azure OpenAI data-plane API version, e.g. 2024-10-21."),
    "referer": ExtraField("HTTP-Referer", header="HTTP-Referer",
                          help="Optional: your site's URL, shown in OpenRouter's rankings."),
    "title": ExtraField("X-Title", header="X-Title", help="Optional: your app's name, shown in OpenRouter's rankings."),
}


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    adapter: Literal["openai_compat", "anthropic", "cloudflare", "claude_cli"]
    base_url: str = ""
    api_key: Need = "required"
    base_url_need: Need = "optional"
    key_env: str = ""
    extra: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    # genai-prices provider id used for default prices; None when it has no data for this kind.
    prices_provider: str | None = None
    # Model ids genai-prices knows under another name, or only as served through another of its
    # providers: {the provider's id: (genai-prices provider id, its model id)}.
    prices_aliases: dict[str, tuple[str, str]] = field(default_factory=dict)
    free: bool = False
    base_url_label: str = "Base URL"
    base_url_help: str = ""
    help: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    # OpenAI-compatible servers that reject `stream_options` say False; their streamed usage is estimated.
    stream_usage: bool = True
    # The body field capping the answer: OpenAI's reasoning models accept only max_completion_tokens.
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # The provider is the billing party and reports what it charged for each call (OpenRouter's
    # `usage.cost`, the Claude CLI's `total_cost_usd`): that charge is the call's cost.
    bills_reported_cost: bool = False
    # False where a request's max_tokens is not honoured (the Claude CLI has no such option): a worst case
    # then reserves the model's whole output.
    caps_output: bool = True
    # The provider accepts OpenAI's `metadata` object on a chat completion (labels, up to 16 string pairs).
    accepts_metadata: bool = False
    # The published maximum output of preset models, in tokens: {model id: tokens}.
    max_output_tokens: dict[str, int] = field(default_factory=dict)
    # Preset embedding models (POST /v1/embeddings), beside the chat models of `models`.
    embedding_models: tuple[str, ...] = ()
    # The provider answers `encoding_format: base64` itself; elsewhere floats are asked for and the gateway
    # encodes them.
    embedding_base64: bool = False

    @property
    def needs_key(self) -> bool:
        return self.api_key == "required"

    @property
    def asks_key(self) -> bool:
        return self.api_key != "none"

    @property
    def asks_base_url(self) -> bool:
        return self.base_url_need != "none"


# Anthropic's models overview: "Max output" of each model, the same through the API and the Claude CLI.
CLAUDE_MAX_OUTPUT_TOKENS = {
    "claude-opus-4-5": 64_000, "claude-sonnet-4-5": 64_000, "claude-haiku-4-5": 64_000,
    "claude-sonnet-4-20250514": 64_000,
}


def _kinds(*kinds: Kind) -> dict[str, Kind]:
    return {kind.name: kind for kind in kinds}


KINDS: dict[str, Kind] = _kinds(
    Kind(
        "anthropic", "Anthropic", "anthropic", base_url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY", prices_provider="anthropic",
        models=("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-4-20250514"),
        max_output_tokens=CLAUDE_MAX_OUTPUT_TOKENS,
        help="Claude models through the official Anthropic SDK.",
    ),
    Kind(
        "openai", "OpenAI", "openai_compat", base_url="https://api.openai.com/v1",
        key_env="OPENAI_API_KEY", prices_provider="openai", max_tokens_param="max_completion_tokens",
        models=("gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "o1", "o1-mini"), accepts_metadata=True,
        embedding_models=("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"),
        embedding_base64=True,
        help="GPT and o-series models through the official OpenAI SDK.",
    ),
    Kind(
        "azure_openai", "Azure OpenAI", "openai_compat", base_url_need="required",
        key_env="AZURE_OPENAI_API_KEY", extra=("api_version",), prices_provider="azure",
        max_tokens_param="max_completion_tokens", embedding_base64=True,
        base_url_label="Azure endpoint", base_url_help="https://RESOURCE.openai.azure.com",
        help="Each model is a deployment: name models after their Azure deployment names.",
    ),
    Kind(
        "openrouter", "OpenRouter", "openai_compat", base_url="https://openrouter.ai/api/v1",
        key_env="OPENROUTER_API_KEY", extra=("referer", "title"), prices_provider="openrouter",
        bills_reported_cost=True,
        models=("anthropic/claude-3-haiku", "openai/gpt-4o-mini"),
        help="Hundreds of models behind one key; model ids carry the vendor prefix.",
    ),
    Kind(
        "gemini", "Google Gemini", "openai_compat",
        base_url="https://generativelanguage.googleapis.com/v1beta/openai/",
        key_env="GEMINI_API_KEY", prices_provider="google",
        models=("gemini-2.0-flash", "gemini-1.5-pro", "gemini-1.5-flash"),
        embedding_models=("gemini-embedding-001",),
        help="Gemini through Google's OpenAI-compatible endpoint (GOOGLE_API_KEY works too).",
    ),
    Kind(
        "groq", "Groq", "openai_compat", base_url="https://api.groq.com/openai/v1",
        key_env="GROQ_API_KEY", prices_provider="groq",
        models=("llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it", "mixtral-8x7b-32768"),
    ),
    Kind(
        "together", "Together AI", "openai_compat", base_url="https://api.together.xyz/v1",
        key_env="TOGETHER_API_KEY", prices_provider="together",
        models=("meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3", "openai/gpt-oss-120b"),
        embedding_models=("BAAI/bge-large-en-v1.5", "intfloat/multilingual-e5-large-instruct"),
        # Together's own prices for these are in genai-prices' data for Together as a Hugging Face provider.
        prices_aliases={"deepseek-ai/DeepSeek-V3": ("huggingface_together", "deepseek-ai/DeepSeek-V3")},
    ),
    Kind(
        "fireworks", "Fireworks AI", "openai_compat", base_url="https://api.fireworks.ai/inference/v1",
        key_env="FIREWORKS_API_KEY", prices_provider="fireworks",
        models=("accounts/fireworks/models/llama-v3p3-70b-instruct",
                "accounts/fireworks/models/qwen3-235b-a22b", "accounts/fireworks/models/deepseek-r1-0528"),
        embedding_models=("nomic-ai/nomic-embed-text-v1.5",),
        # Fireworks' own price for Llama 3.3 70B is in genai-prices' data for Fireworks as a Hugging Face
        # provider, under the model's Hugging Face name.
        prices_aliases={"accounts/fireworks/models/llama-v3p3-70b-instruct":
                        ("huggingface_fireworks-ai", "meta-llama/Llama-3.3-70B-Instruct")},
    ),
    Kind(
        "deepinfra", "DeepInfra", "openai_compat", base_url="https://api.deepinfra.com/v1/openai",
        key_env="DEEPINFRA_API_KEY",
        models=("meta-llama/Llama-3.3-70B-Instruct", "deepseek-ai/DeepSeek-V3"),
        embedding_models=("BAAI/bge-m3", "Qwen/Qwen3-Embedding-8B"),
        help="No public price data: enter prices on each model's page.",
    ),
    Kind(
        "cohere", "Cohere", "openai_compat", base_url="https://api.cohere.ai/compatibility/v1",
        key_env="COHERE_API_KEY", prices_provider="cohere", stream_usage=False,
        models=("command-a-03-2025", "command-r-plus", "command-r"),
        embedding_models=("embed-v4.0", "embed-english-v3.0", "embed-multilingual-v3.0"),
        help="Command models through Cohere's Compatibility API (CO_API_KEY works too).",
    ),
    Kind(
        "cloudflare", "Cloudflare Workers AI", "cloudflare",
        base_url="https://api.cloudflare.com/client/v4", key_env="CLOUDFLARE_API_TOKEN",
        extra=("account_id",), prices_provider="cloudflare",
        models=("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "@cf/meta/llama-3.1-8b-instruct-fast",
                "@cf/qwen/qwq-32b"),
        help="Workers AI over REST with an API token that can run Workers AI.",
    ),
    Kind(
        "ollama", "Ollama", "openai_compat", base_url="http://localhost:11434/v1", api_key="none",
        free=True,
        help="A local Ollama server; models come from the server and cost nothing.",
    ),
    Kind(
        "vllm", "vLLM", "openai_compat", base_url="http://localhost:8000/v1", api_key="none",
        free=True,
        base_url_help="vLLM listens on port 8000 by default, the same port as aspweb's development server: "
        "start one of them on another port.",
        help="A local vLLM server; models come from the server and cost nothing.",
    ),
    Kind(
        "openai_compatible", "OpenAI-compatible URL", "openai_compat", api_key="optional",
        base_url_need="required", base_url_help="The URL that ends before /chat/completions, e.g. …/v1",
        help="Any server speaking the OpenAI chat-completions format: LM Studio, llama.cpp, a proxy.",
    ),
    Kind(
        "claude_cli", "Claude CLI", "claude_cli", api_key="none", base_url_need="none",
        prices_provider="anthropic", models=("claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"),
        bills_reported_cost=True, caps_output=False, max_output_tokens=CLAUDE_MAX_OUTPUT_TOKENS,
        help="Runs the “claude” command on this server with its own login; needs the CLI installed.",
    ),
)

KIND_CHOICES = [(kind.name, kind.label) for kind in KINDS.values()]


# Model ids that clearly name an embedding model: text-embedding-3-small, gemini-embedding-001, embed-v4.0,
# nomic-embed-text, BAAI/bge-m3, thenlper/gte-large, intfloat/multilingual-e5-large.
_EMBEDDING_NAME = re.compile(r"embed|(?:^|[/_.-])(?:bge|gte|e5)(?:[_.-]|$)", re.IGNORECASE)


def names_embedding(model_id: str) -> bool:
    return bool(_EMBEDDING_NAME.search(model_id))


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown provider kind {name!r}; known kinds: {', '.join(KINDS)}") from None
