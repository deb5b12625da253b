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
    # Part of the URL's path (project) and host name (region): nothing that could leave its place in it.
    "project": ExtraField("Project ID",
                          help="The Google Cloud project billed for the calls. Blank: the key's own project_id.",
                          pattern=r"\A[a-z][a-z0-9-]{4,28}[a-z0-9]\Z",
                          pattern_words="Enter the project ID as Google Cloud shows it: 6 to 30 lowercase letters, "
                                        "digits and dashes, starting with a letter."),
    "region": ExtraField("Region", required=True, default="us-central1",
                         help="Where the models run, e.g. us-central1, europe-west4, or global (Google picks the "
                              "region: fewer rate limits, no data residency).",
                         pattern=r"\A[a-z][a-z0-9-]{0,38}[a-z0-9]\Z",
                         pattern_words="Enter a Vertex AI region such as us-central1 or europe-west4, or global."),
    "referer": ExtraField("HTTP-Referer", header="HTTP-Referer",
                          help="Optional: your site's URL, shown in OpenRouter's rankings."),
    "title": ExtraField("X-Title", header="X-Title", help="Optional: your app's name, shown in OpenRouter's rankings."),
    "aws_region": ExtraField("AWS region", required=True, default="us-east-1",
                         help="Where the models run, e.g. us-east-1, us-west-2, eu-central-1.",
                         pattern=r"\A[a-z]{2}(-[a-z]+)+-\d{1,2}\Z",
                         pattern_words="Enter an AWS region name such as us-east-1."),
    "aws_access_key_id": ExtraField(
        "Access key ID", help="Blank: the server's default AWS credentials (environment variables, ~/.aws, or "
                              "the instance's or task's role).",
        pattern=r"\A[A-Z0-9]{16,128}\Z", pattern_words="Enter the access key ID as AWS shows it: capital letters "
                                                       "and digits, such as AKIA followed by 16 more."),
}


@dataclass(frozen=True)
class SecretField:
    label: str
    help: str = ""


# Secrets a kind needs besides (or instead of) one API key; kept together, as a JSON object, in the
# encrypted Provider.api_key, and never shown again once stored.
SECRET_FIELDS: dict[str, SecretField] = {
    "aws_secret_access_key": SecretField("Secret access key", help="Stored encrypted; needed with an access key ID."),
    "aws_session_token": SecretField("Session token", help="Optional: only for temporary credentials (STS)."),
}


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    adapter: Literal["openai_compat", "anthropic", "cloudflare", "claude_cli", "ruvllm", "bedrock", "vertex"]
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
    # Secrets asked one by one (SECRET_FIELDS) instead of one API key; stored as one JSON object.
    secrets: tuple[str, ...] = ()
    # What the secret is: an API key ("token"), or a Google Cloud service account's JSON key, which is
    # checked as one, asked for in a text area and never shown again, not even its last characters.
    key_format: Literal["token", "service_account"] = "token"
    # A prefix of the provider's model ids that genai-prices leaves out (Vertex's publisher, "google/").
    prices_model_prefix: str = ""
    # Preset embedding models (POST /v1/embeddings), beside the chat models of `models`.
    embedding_models: tuple[str, ...] = ()

    @property
    def needs_key(self) -> bool:
        return self.api_key == "required"

    @property
    def asks_key(self) -> bool:
        return self.api_key != "none"

    @property
    def key_label(self) -> str:
        return "Service account key (JSON)" if self.key_format == "service_account" else "API key"

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
        help="GPT and o-series models through the official OpenAI SDK.",
    ),
    Kind(
        "azure_openai", "Azure OpenAI", "openai_compat", base_url_need="required",
        key_env="AZURE_OPENAI_API_KEY", extra=("api_version",), prices_provider="azure",
        max_tokens_param="max_completion_tokens",
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
        "ruvllm", "ruvLLM", "ruvllm", base_url="http://localhost:3000", api_key="none", free=True,
        caps_output=False, models=("ruvector-auto", "ruvector-fast", "ruvector-quality", "ruvector-balanced"),
        base_url_help="ruvllm-server listens on port 3000 by default.",
        help="RuVector's self-learning local engine: it picks its model per query and keeps each conversation "
        "in a session; answers come whole, tokens are estimated, and it costs nothing.",
    ),
    Kind(
        "claude_cli", "Claude CLI", "claude_cli", api_key="none", base_url_need="none",
        prices_provider="anthropic", models=("claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5"),
        bills_reported_cost=True, caps_output=False, max_output_tokens=CLAUDE_MAX_OUTPUT_TOKENS,
        help="Runs the “claude” command on this server with its own login; needs the CLI installed.",
    ),
    Kind(
        "bedrock", "Amazon Bedrock", "bedrock", api_key="optional", extra=("aws_region", "aws_access_key_id"),
        secrets=("aws_secret_access_key", "aws_session_token"), prices_provider="aws",
        base_url_label="Endpoint URL",
        base_url_help="Leave blank for the region's endpoint (bedrock-runtime.REGION.amazonaws.com); "
                      "or a VPC endpoint's URL.",
        models=("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "us.meta.llama3-3-70b-instruct-v1:0", "us.meta.llama4-maverick-17b-instruct-v1:0",
                "mistral.mistral-large-2402-v1:0", "us.mistral.pixtral-large-2502-v1:0",
                "amazon.nova-pro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-micro-v1:0"),
        max_output_tokens={"us.anthropic.claude-sonnet-4-5-20250929-v1:0": 64_000,
                           "us.anthropic.claude-haiku-4-5-20251001-v1:0": 64_000},
        # Through InvokeModel (adapters/bedrock.embed): Amazon Titan Text Embeddings and Cohere Embed.
        embedding_models=("amazon.titan-embed-text-v2:0", "cohere.embed-v4:0", "cohere.embed-english-v3",
                          "cohere.embed-multilingual-v3"),
        help="Anthropic, Meta, Mistral and Amazon models through Bedrock's Converse API, Titan and Cohere "
             "embeddings through InvokeModel, with an access key or the server's AWS credentials.",
    ),
    Kind(
        "vertex", "Google Vertex AI", "vertex", key_format="service_account", extra=("project", "region"),
        base_url_help="Leave blank for Google's endpoint of the region (https://REGION-aiplatform.googleapis.com/v1"
                      "; aiplatform.googleapis.com for global). A private endpoint ends with /v1.",
        # genai-prices' "google" prices Vertex too (it takes "google-vertex" as another name of it).
        prices_provider="google", prices_model_prefix="google/",
        models=("google/gemini-2.5-flash", "google/gemini-2.5-pro", "google/gemini-2.0-flash",
                "claude-sonnet-4-5@20250929", "claude-haiku-4-5@20251001", "claude-opus-4-5@20251101"),
        max_output_tokens={"claude-sonnet-4-5@20250929": 64_000, "claude-haiku-4-5@20251001": 64_000,
                           "claude-opus-4-5@20251101": 64_000},
        help="Gemini (publisher/model ids, e.g. google/gemini-2.5-flash) and Claude (e.g. "
             "claude-sonnet-4-5@20250929) on Google Cloud, with a service account's JSON key.",
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
