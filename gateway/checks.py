"""Checks of request bodies, shared by the two wire formats. Each raises BadRequest naming the parameter,
so that a wrong request is a 400 that says what to fix, never a 500."""

from typing import Any

from aspweb.text import first_text_problem, text_problem

# Far above any model's limit, and below what a 32-bit column would refuse further down.
MAX_INT = 2**31 - 1
# Embeddings: OpenAI's limit of inputs a request, and a bound on `dimensions` far above any model's vectors.
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_DIMENSIONS = 65_536


class BadRequest(Exception):
    """The client's request is wrong (400). `param` is the JSON path of the culprit, `code` a short reason."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{param} must be an object, not {type_name(value)}.", param)
    return value


def array(value: Any, param: str, *, non_empty: bool = False, most: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{param} must be an array, not {type_name(value)}.", param)
    if non_empty and not value:
        raise BadRequest(f"{param} must not be empty.", param)
    if most is not None and len(value) > most:
        raise BadRequest(f"{param} holds {len(value)} items; at most {most} are allowed.", param)
    return value


def content_array(value: Any, param: str, *, non_empty: bool = False) -> list[Any]:
    """Content that may be a string (handled by the caller) or an array of parts: the refusal names both."""
    if not isinstance(value, list):
        raise BadRequest(f"{param} must be a string or an array, not {type_name(value)}.", param)
    return array(value, param, non_empty=non_empty)


def text(value: Any, param: str, *, non_empty: bool = False, longest: int | None = None) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{param} must be a string, not {type_name(value)}.", param)
    if non_empty and not value.strip():
        raise BadRequest(f"{param} must not be empty.", param)
    if longest is not None and len(value) > longest:
        raise BadRequest(f"{param} is longer than {longest} characters.", param)
    return value


def number(value: Any, param: str, low: float, high: float) -> float:
    # bool is an int in Python, not in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise BadRequest(f"{param} must be a number, not {type_name(value)}.", param)
    if not low <= value <= high:
        raise BadRequest(f"{param} must be between {low:g} and {high:g}; it is {value:g}.", param)
    return float(value)


def integer(value: Any, param: str, low: int, high: int = MAX_INT) -> int:
    # A whole number written as a float (10.0, 1e300) is one; the refusal shows it as it was sent, not as
    # the hundreds of digits its conversion would print.
    sent = f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{param} must be an integer, not {type_name(value)}.", param)
    if not low <= value <= high:
        raise BadRequest(f"{param} must be between {low} and {high}; it is {sent}.", param)
    return value


def boolean(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{param} must be true or false, not {type_name(value)}.", param)
    return value


def one_of(value: Any, param: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        shown = repr(value) if isinstance(value, str) else type_name(value)
        raise BadRequest(f"{param} must be one of {', '.join(choices)}; it is {shown}.", param)
    return value


def image_url(value: Any, param: str) -> str:
    url = text(value, param, non_empty=True)
    if not url.startswith(("https://", "http://", "data:image/")):
        raise BadRequest(f"{param} must be an http(s) URL or a data:image/...;base64 URL.", param)
    return url


def model_name(value: Any, param: str = "model") -> str:
    if value is None:
        raise BadRequest("model is required: a route name or PROVIDER/MODEL.", param, "missing_required_parameter")
    name = text(value, param, non_empty=True, longest=300).strip()
    if problem := text_problem(name):  # looked up in the database, and written to it with a refusal
        raise BadRequest(f"{param} contains {problem}, which no model or route name has.", param, "invalid_text")
    return name


def unicode_text(body: dict[str, Any], *, dotted: bool) -> None:
    """Every string of the body, keys included, is Unicode: a lone surrogate cannot be encoded to be sent on
    (Anthropic refuses one too), so it is the client's 400 here rather than a failed call. NUL is allowed:
    prompts and tool results may hold it, and they are passed on, never stored. `dotted` writes array
    indexes the Anthropic way (messages.0.content), else the OpenAI way (messages[0].content)."""
    if found := first_text_problem(body, nul=False):
        path, problem = found
        param = "".join(f".{part}" if dotted or isinstance(part, str) else f"[{part}]" for part in path)[1:]
        raise BadRequest(f"{param} contains {problem}, which is not Unicode text.", param, "invalid_text")
