"""Typed pipeline settings, one pydantic model per pipeline on this base.

Each field is written once, with its type, default and description. A run's settings are resolved
in one order, each source overriding the ones before it:

1. the field's default in the model;
2. ``defaults`` given in the DAG file (the operator's ``settings_defaults`` argument);
3. environment variables ``<ENV_PREFIX><FIELD NAME IN CAPITALS>`` (deploy-time; JSON for lists and
   objects, plain text for the rest);
4. the Airflow Variable ``VARIABLE``: a JSON object of field names (changeable without a deploy);
5. the run's Params, for the fields in ``RUN_PARAMS`` (the trigger form, each under its
   ``PARAM_NAMES`` name if it has one; an empty field, null, keeps the value from 1-4).

Unknown keys are an error in every source; a key listed in ``MOVED_KEYS`` says where it went. Use
``Integer`` and ``Number`` for numeric fields: they refuse true/false. A bad value raises
``ConfigurationError`` naming the source, the field and what it accepts, never the value given.

Connection ids are not settings: they are operator arguments set in the DAG file, defaulting to the
hook's ``default_conn_name``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from etlkit.common.errors import ConfigurationError

log = logging.getLogger(__name__)

__all__ = ["Integer", "Number", "PipelineSettings"]


def _not_a_boolean(value: Any) -> Any:
    # pydantic's lax mode reads JSON true as 1: a boolean where a number belongs is a mistake.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


Integer = Annotated[int, BeforeValidator(_not_a_boolean)]
Number = Annotated[float, BeforeValidator(_not_a_boolean)]


class PipelineSettings(BaseModel):
    """Base of every pipeline's settings model. Subclasses set the three class variables."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    VARIABLE: ClassVar[str | None] = None
    ENV_PREFIX: ClassVar[str | None] = None
    RUN_PARAMS: ClassVar[tuple[str, ...]] = ()
    # a field whose trigger-form Param has another name (kept from an earlier release): field -> Param
    PARAM_NAMES: ClassVar[Mapping[str, str]] = {}
    # keys that were settings and moved elsewhere: key -> where they went (said when a source sets one)
    MOVED_KEYS: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def resolve(
        cls,
        context: Mapping[str, Any] | None = None,
        *,
        defaults: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        variable: Any = None,
        read_variable: bool = True,
    ) -> Self:
        """The settings of one run, from the sources in the module's order. ``variable`` is the
        Variable's value when the caller has it (a dict or JSON text); otherwise, inside a task, it
        is read through ``airflow.sdk.Variable`` when ``read_variable`` is true."""
        sources: list[tuple[str, Mapping[str, Any]]] = [
            ("the DAG file's settings_defaults", dict(defaults or {})),
            (f"environment variables {cls.ENV_PREFIX}*", cls._from_environ(environ)),
        ]
        if cls.VARIABLE:
            if variable is None and read_variable:
                variable = _variable_text(cls.VARIABLE)
            sources.append((f"Variable {cls.VARIABLE}", cls._from_variable(variable)))
        params = (context or {}).get("params") or {}
        given = {k: params.get(cls.PARAM_NAMES.get(k, k)) for k in cls.RUN_PARAMS}
        sources.append(("the run's params", {k: v for k, v in given.items() if v is not None}))
        return cls._merge(sources)

    @classmethod
    def dag_params(cls, **overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The trigger-form Params for ``RUN_PARAMS``: each nullable (null keeps the configured value)
        with the field's JSON schema and description. ``overrides`` adds schema keys per field."""
        from airflow.sdk import Param

        schema = cls.model_json_schema()["properties"]
        params = {}
        for name in cls.RUN_PARAMS:
            field = dict(schema[name])
            description = field.pop("description", "") or ""
            field.pop("title", None)
            default = field.pop("default", None)
            kind = _nullable(field)
            if default is not None:
                description = f"{description} (default {json.dumps(default)})".strip()
            param = Param(None, description=description, **kind, **overrides.get(name, {}))
            params[cls.PARAM_NAMES.get(name, name)] = param
        return params

    @classmethod
    def _merge(cls, sources: list[tuple[str, Mapping[str, Any]]]) -> Self:
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        problems = []
        for source, given in sources:
            moved = sorted(given.keys() & cls.MOVED_KEYS.keys())
            problems += [f"{source}: {key!r} is no longer a setting: {cls.MOVED_KEYS[key]}" for key in moved]
            unknown = sorted(set(given) - set(cls.model_fields) - set(cls.MOVED_KEYS))
            if unknown:
                problems.append(f"{source}: unknown keys {unknown} (known: {sorted(cls.model_fields)})")
            for name in given.keys() & cls.model_fields.keys():
                values[name], origin[name] = given[name], source
        if problems:
            raise ConfigurationError(f"{cls.__name__}: " + "; ".join(problems))
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(f"{cls.__name__}: " + "; ".join(_describe(exc, origin))) from None
        # Which value came from where, so a run's log says what it ran with (settings hold no secrets:
        # those live in connections).
        chosen = [
            f"{name}={getattr(settings, name)!r} ({origin[name]})"
            for name in cls.model_fields
            if name in origin
        ]
        log.info("%s: %s", cls.__name__, "; ".join(chosen) or "the defaults")
        return settings

    @classmethod
    def _from_environ(cls, environ: Mapping[str, str] | None) -> dict[str, Any]:
        if not cls.ENV_PREFIX:
            return {}
        environ = os.environ if environ is None else environ
        values = {}
        for name, field in cls.model_fields.items():
            key = f"{cls.ENV_PREFIX}{name.upper()}"
            if key in environ:
                values[name] = _env_value(environ[key], field.annotation)
        return values

    @classmethod
    def _from_variable(cls, raw: Any) -> dict[str, Any]:
        if raw is None or raw == "":
            return {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise ConfigurationError(
                    f"Variable {cls.VARIABLE} is not JSON ({exc.msg}); set it to a JSON object of settings"
                ) from None
        if not isinstance(raw, dict):
            raise ConfigurationError(
                f"Variable {cls.VARIABLE} must be a JSON object, got {type(raw).__name__}"
            )
        return raw


def _variable_text(key: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(key, default=None)


def _env_value(text: str, annotation: Any) -> Any:
    """Lists and objects come as JSON; pydantic's lax mode reads numbers and booleans from text."""
    if text.strip()[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    if text.strip().lower() in ("null", "none", "") and "None" in str(annotation):
        return None
    return text


def _nullable(field: dict[str, Any]) -> dict[str, Any]:
    """The field's JSON schema with null admitted (``anyOf`` as pydantic writes ``X | None``)."""
    if "anyOf" in field:
        options = field.pop("anyOf")
        types = [o["type"] for o in options if "type" in o]
        for option in options:
            field.update({k: v for k, v in option.items() if k != "type"})
        field["type"] = sorted(set(types) | {"null"})
    elif "type" in field:
        field["type"] = [field["type"], "null"]
    if "enum" in field:
        field["enum"] = [*field["enum"], None]
    return field


def _describe(exc: ValidationError, origin: Mapping[str, str]) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        if not error["loc"]:
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        name = str(error["loc"][0])
        source = origin.get(name, "the model's default")
        lines.append(f"{name} (from {source}): {error['msg'].removeprefix('Value error, ')}")
    return lines
