"""Logged prompts and answers (opt-in): what a call's body becomes before it is stored, and how it is found.

The call path hands the ledger a plain dict per logged call (`{"request": {...}, "answer": {...}}`, see
providers/calls.py `_body`) with the call's usage record; the ledger's batch writes it in the record's own
transaction (usage.services), prepared first, outside that transaction, by `prepare`:

1. redacted: API keys and other secrets in common shapes, e-mail addresses, card numbers (those that pass the
   Luhn check) and the patterns of LOG_BODIES_REDACT_PATTERNS become `[redacted: KIND]`;
2. capped: each side (the request, the answer) keeps at most LOG_BODIES_MAX_CHARS characters of text; what
   is cut is replaced by `[… N characters not logged]`, and the row says it was truncated;
3. indexed for search: the distinct words of the redacted text, each as a keyed hash (BLAKE2b under a key
   derived from SECRET_KEY, 12 hex digits), in `CallBody.search_tokens`. Bodies are encrypted (Fernet), so
   SQL cannot look into them; a keyed hash of each word can be matched by SQL on PostgreSQL and SQLite alike,
   over the whole retention window, and tells nothing of the words to someone who has the database but not
   the key (it does tell that two bodies share a word). Search is by whole words: "timeout" finds "Timeout!"
   but "time" does not;
4. encrypted with the project's encryption keys (providers.crypto.EncryptedField), rotated with the rest.

Bodies never go to the ledger's Redis journal (usage/journal.py): a call answered before its record is
committed loses its body, never its record, if its worker dies in between.
"""

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

from aspweb.text import storable

TRUNCATED = "[… {} characters not logged]"
_TOKEN_SALT = "aspweb.usage.bodies.search"  # noqa: S105 - a salt naming the use, not a secret
_TOKEN_HEX = 12
_MAX_TOKENS = 5000
_MARGIN = 4096  # characters past a cap that are redacted with what is kept (a PEM key is ~3,300)
_WORD = re.compile(r"\w{2,64}")
_SHORT = 256  # characters: up to here, one search for any needle comes before the test of each

# (kind, needles, pattern): secrets in the shapes providers and common services issue them, each tried only on
# text that holds one of its needles (in lower case), so that ordinary prose costs a few substring tests rather
# than a dozen regular expressions. Ordered: the first that matches a stretch of text names it.
_SECRETS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("private key", ("private key",),
     r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    ("api key", ("ask-",), r"\bask-[a-z0-9]{8}[A-Za-z0-9]{40}\b"),  # aspweb's own
    ("api key", ("sk-",), r"\bsk-(?:ant-|proj-|svcacct-|or-v1-)?[A-Za-z0-9_\-]{16,}"),  # Anthropic, OpenAI, OpenRouter
    ("api key", ("_live_", "_test_"), r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),  # Stripe
    ("api key", ("aiza",), r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # Google
    ("api key", ("akia", "asia"), r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    ("api key", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),  # GitHub
     r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    ("api key", ("glpat-",), r"\bglpat-[A-Za-z0-9_\-]{20,}\b"),  # GitLab
    ("api key", ("xox",), r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b"),  # Slack
    ("api key", ("gsk_",), r"\bgsk_[A-Za-z0-9]{20,}\b"),  # Groq
    ("token", ("eyj",), r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\b"),  # JWT
    ("token", ("bearer",), r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9._~+/\-]{16,}=*)"),
    # `password = hunter22`, `"api_key": "..."`: the value after a name that says it is secret.
    ("secret", ("pass", "pwd", "secret", "key", "token"),
     r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|apikey|access[_-]?key|auth[_-]?token|client[_-]?secret|"
     r"private[_-]?key|token)[\"']?\s{0,3}[:=]\s{0,3}[\"']?(?P<value>[^\s\"',;\[]{6,})"),
    # Bounded, as every pattern here that does not start with a fixed text: an unbounded run tried at every
    # position of a long word (a pasted base64 blob) would take time quadratic in its length.
    ("e-mail", ("@",),
     r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"),
)
# 13 to 19 digits, in groups separated by single spaces or dashes; kept only when the Luhn check passes.
# (No lookbehind: at the start of a pattern it is tried at every position of the text and makes the scan several
# times slower; `_card` looks at the character before instead.)
_CARD = re.compile(r"\d(?:[ \-]?\d){12,18}(?![\d\-])")


@dataclass(frozen=True)
class _Redaction:
    """The patterns compiled; `needles`: each needle with the positions of the built-in patterns it admits.
    (Substring tests of the lower-cased text: far faster than one regular expression of every needle.)"""

    needles: tuple[tuple[str, tuple[int, ...]], ...]
    secrets: tuple[tuple[str, re.Pattern[str]], ...]
    extra: tuple[re.Pattern[str], ...]
    # Any needle at all, in one expression: for a short text (most strings of a body: a role, a model's name,
    # a short message) one search costs less than a test per needle.
    any_needle: re.Pattern[str]


@lru_cache(maxsize=8)
def _redaction(extra: tuple[str, ...]) -> _Redaction:
    admits: dict[str, list[int]] = {}
    for n, (_, group, _) in enumerate(_SECRETS):
        for needle in group:
            admits.setdefault(needle, []).append(n)
    return _Redaction(tuple((needle, tuple(ns)) for needle, ns in admits.items()),
                      tuple((kind, re.compile(pattern)) for kind, _, pattern in _SECRETS),
                      tuple(re.compile(pattern) for pattern in extra),
                      re.compile("|".join(re.escape(needle) for needle in admits)))


def _configured() -> _Redaction:
    return _redaction(tuple(settings.LOG_BODIES_REDACT_PATTERNS))


def _luhn(digits: str) -> bool:
    total = 0
    for n, char in enumerate(reversed(digits)):
        d = int(char)
        if n % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    if match.start() and match.string[match.start() - 1] in "0123456789-":
        return match.group()  # the tail of a longer number
    digits = re.sub(r"\D", "", match.group())
    return "[redacted: card number]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def _replacement(kind: str) -> Any:
    mark = f"[redacted: {kind}]"

    def replace(match: re.Match[str]) -> str:
        if "value" not in match.re.groupindex:
            return mark
        # Only the value is secret: `password: [redacted: secret]` still says what was there.
        start, end = match.span("value")
        return match.group()[:start - match.start()] + mark + match.group()[end - match.start():]

    return replace


def redact(text: str, redaction: _Redaction | None = None) -> str:
    """`text` with secrets, e-mail addresses, card numbers and the configured patterns replaced."""
    if not text:
        return text
    redaction = redaction or _configured()
    lower = text.lower()
    if len(text) <= _SHORT and not redaction.any_needle.search(lower):
        admitted: set[int] = set()
    else:
        admitted = {n for needle, ns in redaction.needles if needle in lower for n in ns}
    for n in sorted(admitted):  # in the patterns' order
        kind, pattern = redaction.secrets[n]
        text = pattern.sub(_replacement(kind), text)
    for pattern in redaction.extra:
        text = pattern.sub("[redacted: pattern]", text)
    return _CARD.sub(_card, text)


class _Budget:
    """What is left of a side's characters: a string past it is cut and marked, and redacted. Cut first (with a
    margin, so that a secret across the cut is still whole when it is redacted), so that redacting costs no more
    than the cap, however long the string."""

    def __init__(self, chars: int, redaction: _Redaction) -> None:
        self.left, self.cut, self.redaction = chars, 0, redaction

    def take(self, text: str) -> str:
        if len(text) <= self.left:
            self.left -= len(text)
            return redact(text, self.redaction)
        kept, cut = redact(text[:self.left + _MARGIN], self.redaction)[:self.left], len(text) - self.left
        self.left, self.cut = 0, self.cut + cut
        return kept + TRUNCATED.format(f"{cut:,}")


def _walk(value: Any, budget: _Budget, words: set[str]) -> Any:
    """`value` (JSON data) with every string capped, redacted and its words gathered."""
    if isinstance(value, str):
        text = budget.take(storable(value))
        if len(words) < _MAX_TOKENS:
            words.update(_WORD.findall(text.lower()))
        return text
    if isinstance(value, dict):
        return {key: _walk(item, budget, words) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(item, budget, words) for item in value]
    return value


@dataclass(frozen=True)
class Prepared:
    """A body ready to store: its redacted, capped JSON text, its search tokens, whether something was cut."""

    content: str
    search_tokens: str
    truncated: bool


def prepare(body: dict[str, Any]) -> Prepared:
    words: set[str] = set()
    sides, truncated, redaction = {}, False, _configured()
    for side in ("request", "answer"):
        budget = _Budget(settings.LOG_BODIES_MAX_CHARS, redaction)
        sides[side] = _walk(body.get(side) or {}, budget, words)
        truncated = truncated or budget.cut > 0
    content = json.dumps(sides, ensure_ascii=False, separators=(",", ":"))
    return Prepared(content, tokens_text(words), truncated)


@lru_cache(maxsize=4)
def _token_key(secret_key: str) -> bytes:
    return salted_hmac(_TOKEN_SALT, "search tokens", secret=secret_key, algorithm="sha256").digest()


def token(word: str) -> str:
    """A word's keyed hash (BLAKE2b under a key derived from SECRET_KEY), as stored in search_tokens."""
    return _hashed(_token_key(settings.SECRET_KEY), word.lower())


def _hashed(key: bytes, word: str) -> str:
    # Not cached: a cache would keep words of people's prompts in the process's memory past their call.
    return hashlib.blake2b(word.encode(), key=key, digest_size=_TOKEN_HEX // 2).hexdigest()


@lru_cache(maxsize=4)
def _keyed(key: bytes) -> Any:
    """BLAKE2b with the key already absorbed: a copy hashes a word as `_hashed` does, without keying it anew."""
    return hashlib.blake2b(key=key, digest_size=_TOKEN_HEX // 2)


def tokens_text(words: Iterable[str]) -> str:
    """The column's text (words in lower case): each token between spaces, so that `contains " T "` matches a
    whole token."""
    keyed = _keyed(_token_key(settings.SECRET_KEY))
    hashed = set()
    for word in words:
        one = keyed.copy()
        one.update(word.encode())
        hashed.add(one.hexdigest())
    return f" {' '.join(sorted(hashed))} " if hashed else ""


def query_tokens(text: str) -> list[str]:
    """The tokens a search for `text` needs, each to be found: one per word of it, as bodies are indexed."""
    return [f" {token(word)} " for word in dict.fromkeys(w.lower() for w in _WORD.findall(text))]


def read(content: Any) -> dict[str, Any]:
    """A stored body (the decrypted field value) as data: {"request": {...}, "answer": {...}}."""
    from providers.crypto import reveal

    return json.loads(reveal(content) or "{}")
