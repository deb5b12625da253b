"""Config as code: teams, providers, models, prices, routes and budgets from a YAML file, and back.

The file is checked with the forms the UI uses, so each rule lives in one place. Nothing is written
unless the whole file is valid, and importing the same file again changes nothing. API keys never appear
in a file: they are ``${NAME}`` references to environment variables, resolved by `load_yaml`.

Settings a file leaves out keep their current value (or the default for a new provider or model), the
way a blank key keeps the stored key in the UI; providers and models the file does not name are left alone.

Each app owns its section of the file, its checks, its writes and its export (accounts/config.py,
providers/config.py, gateway/config.py, budgets/config.py) and registers it here from its AppConfig.ready:
this module knows the file (its sections, their order, YAML and `${NAME}` references) and runs them, every
section checked before any is written, all in one transaction. An app above providers may own a setting of
each provider entry the same way (a ProviderPart: reconcile/config.py's `reporting`).
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction

from .text import text_problem

# Top-level sections a file may have, in the order they are checked, written and exported: a route's
# deployments and a budget's target may name a provider, model or team the same file creates.
SECTIONS = ("teams", "providers", "routes", "budgets")
DEFAULT_ACTOR = "import_config"

# `${NAME}` is replaced by an environment variable; `$${NAME}` stands for a literal `${NAME}`.
_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)(\}?)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FromEnv(str):
    """A string that was one whole `${NAME}` reference in the file: a secret the file named without holding it
    (a setting that must never be written as text in a file checks for this)."""


class ConfigError(Exception):
    """A config file that cannot be imported; `errors` holds every problem, each with where it is."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Report:
    """What an import did (or, in a dry run, would do), one line per provider and model."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def summary(self) -> str:
        text = f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"
        return f"{text} (dry run: nothing was written)" if self.dry_run else text


# Reading ---------------------------------------------------------------------------------------------


def load_yaml(text: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Parse a config file and resolve `${NAME}` in every string from `environ`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"invalid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"the file must be a mapping of sections ({', '.join(SECTIONS)}), "
                           f"not {type_name(data)}"])
    errors: list[str] = []
    data = _substitute(data, "", environ, errors)
    if errors:
        raise ConfigError(errors)
    return data


def _substitute(value: Any, where: str, environ: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(value, dict):
        for key in value:
            _storable(key, f"{where or 'the file'}: a key", errors)
        return {key: _substitute(item, key_path(where, key), environ, errors) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, item_path(where, index, item), environ, errors)
                for index, item in enumerate(value)]
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        value = _REFERENCE.sub(lambda match: _resolve(match, where, environ, errors), value)
        _storable(value, where, errors)
        referenced = whole is not None and not whole.group(1) and whole.group(3) and whole.group(2) in environ
        return FromEnv(value) if referenced else value
    return value


def _storable(value: Any, where: str, errors: list[str]) -> None:
    """YAML's escapes (and an environment variable's undecodable bytes) can give text no database can hold:
    found here, before it is looked up or written anywhere."""
    if isinstance(value, str) and (problem := text_problem(value)):
        errors.append(f"{where}: contains {problem}, which cannot be stored")


def _resolve(match: re.Match[str], where: str, environ: Mapping[str, str], errors: list[str]) -> str:
    escaped, name, closed = match.groups()
    if escaped:
        return match.group(0)[1:]
    if not closed or not _ENV_NAME.fullmatch(name):
        # A typo here would otherwise be stored as the key itself.
        errors.append(f"{where}: malformed reference {match.group(0)!r}: "
                      "write ${NAME}, or $${ for a literal ${")
        return match.group(0)
    if name not in environ:
        errors.append(f"{where}: environment variable {name} is not set")
        return ""
    return environ[name]


@dataclass
class Declared:
    """What the sections checked so far declare, for the ones after them: provider names, (provider,
    model) name pairs, and team names in lower case."""

    providers: set[str] = field(default_factory=set)
    models: set[tuple[str, str]] = field(default_factory=set)
    teams: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Section:
    """One top-level section of the file, owned by its app (registered from its AppConfig.ready).

    - check(entries, declared, errors) -> plans: the section's plans, checked against the database and
      `declared`; problems go to `errors`. Adds what it declares to `declared`. Writes nothing.
    - apply(plans, actor, report): write checked plans (in the import's transaction).
    - export(placeholders) -> entries: every entry, as a file names it; secrets as `${NAME}` placeholders
      not in `placeholders` yet (added to it)."""

    name: str
    check: Callable[[Any, Declared, list[str]], list[Any]]
    apply: Callable[[list[Any], Any, "Report"], None]
    export: Callable[[set[str]], list[dict[str, Any]]]
    # Written by the export even when it has no entries.
    exported_when_empty: bool = False


_sections: dict[str, Section] = {}


def section_register(section: Section) -> None:
    """Make `section` (one of SECTIONS) part of every import and export."""
    if section.name not in SECTIONS:
        raise ValueError(f"{section.name!r} is not a config section; they are {', '.join(SECTIONS)}")
    _sections[section.name] = section


def _registered() -> list[Section]:
    return [_sections[name] for name in SECTIONS if name in _sections]


@dataclass(frozen=True)
class ProviderPart:
    """A setting of every provider entry (`key`), owned by an app above providers and registered from its
    AppConfig.ready; providers/config.py runs it with the provider's own checks, writes and export.

    - check(value, kind, provider, where, errors) -> plan: the entry's value for a provider of `kind` (its
      row, or None when the file creates it); problems go to `errors`. Writes nothing.
    - apply(provider, plan, actor, report): write a checked plan, once the provider is written.
    - export(provider, placeholders) -> value, or None to leave the key out; secrets as placeholders."""

    key: str
    check: Callable[[Any, str, Any, str, list[str]], Any]
    apply: Callable[[Any, Any, Any, "Report"], None]
    export: Callable[[Any, set[str]], Any]


_provider_parts: dict[str, ProviderPart] = {}


def provider_part_register(part: ProviderPart) -> None:
    _provider_parts[part.key] = part


def provider_parts() -> list[ProviderPart]:
    return list(_provider_parts.values())


def config_import(data: Mapping[str, Any], *, actor: Any, dry_run: bool = False) -> Report:
    """Create or update the providers, models, prices, routes and budgets `data` describes, all or nothing.

    Raises ConfigError with every problem found; nothing is written then. A dry run does the whole
    import and rolls it back, so its report is exactly what a real import would do.
    """
    actor = actor or DEFAULT_ACTOR
    if not isinstance(data, Mapping):
        raise ConfigError([f"the config must be a mapping of sections ({', '.join(SECTIONS)}), "
                           f"not {type_name(data)}"])
    errors = [f"{key}: unknown section; supported sections: {', '.join(SECTIONS)}"
              for key in data if key not in SECTIONS]
    report = Report(dry_run=dry_run)
    with transaction.atomic():
        declared = Declared()
        plans = [(section, section.check(data.get(section.name), declared, errors)) for section in _registered()]
        if errors:
            raise ConfigError(errors)
        for section, section_plans in plans:
            section.apply(section_plans, actor, report)
        if dry_run:
            transaction.set_rollback(True)
    return report


def config_export() -> dict[str, Any]:
    """Every section's entries, ready for `dump_yaml`. Secrets (API keys, webhook URLs) are `${NAME}`
    placeholders, never the secret."""
    placeholders: set[str] = set()
    exported = {}
    for section in _registered():
        entries = section.export(placeholders)
        if entries or section.exported_when_empty:
            exported[section.name] = entries
    return exported


# Checking with the UI's forms ---------------------------------------------------------------------


def check_keys(entry: Mapping[str, Any], allowed: tuple[str, ...], where: str, what: str,
                errors: list[str]) -> None:
    for key in entry:
        if key not in allowed:
            errors.append(f"{key_path(where, key)}: unknown setting; {what}: {', '.join(allowed)}")


def form_data(blank: forms.BaseForm, entry: Mapping[str, Any], where: str,
               errors: list[str]) -> dict[str, Any]:
    """The form's current values overlaid with the file's, so what the file leaves out stays as it is."""
    data = {name: blank[name].initial for name in blank.fields}
    for name, form_field in blank.fields.items():
        if name not in entry:
            continue
        value = entry[name]
        if isinstance(value, dict | list):
            errors.append(f"{where}.{name}: expected a single value, not {type_name(value)}")
        elif isinstance(form_field, forms.BooleanField) and not isinstance(value, bool):
            # A checkbox reads any non-empty text as ticked; in a file that would hide typos.
            errors.append(f"{where}.{name}: expected true or false, not {value!r}")
        else:
            data[name] = value
    return data


def form_errors(form: forms.BaseForm, where: str, errors: list[str]) -> None:
    if form.is_valid():
        return
    for name, messages in form.errors.items():
        target = where if name == NON_FIELD_ERRORS else f"{where}.{name}"
        errors.extend(f"{target}: {message}" for message in messages)


# Writing ---------------------------------------------------------------------------------------------


def env_placeholder(name: str, suffix: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The variable an exported file names for a secret of `name`: ("budget team a", "WEBHOOK_URL") ->
    BUDGET_TEAM_A_WEBHOOK_URL."""
    stem = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    if stem[:1].isdigit():
        stem = f"_{stem}"  # a shell variable cannot start with a digit
    placeholder, number = f"{stem}_{suffix}", 2
    # Names like a-b and a.b map to the same stem; each secret needs its own variable.
    while placeholder in taken:
        placeholder, number = f"{stem}_{number}_{suffix}", number + 1
    return placeholder


def literal(text: str) -> str:
    """Escape text so that load_yaml gives it back unchanged."""
    return text.replace("${", "$${")


class _Dumper(yaml.SafeDumper):
    pass


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    # As YAML numbers written digit for digit; reading one back through str() gives the same Decimal.
    if value == value.to_integral_value():
        return dumper.represent_int(int(value))
    return dumper.represent_scalar("tag:yaml.org,2002:float", format(value.normalize(), "f"))


_Dumper.add_representer(Decimal, _represent_decimal)


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


# Paths in messages -----------------------------------------------------------------------------------


def name_of(entry: Any) -> str | None:
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(name, bool) or not isinstance(name, str | int):
        return None
    return str(name).strip() or None


def key_path(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def item_path(where: str, index: int, item: Any) -> str:
    name = name_of(item)
    return f"{where}[{index}]" + (f" ({name})" if name else "")


def type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"
