"""Clarify's analysis-config schema (the SageMaker SDK's copy): check a file against it, and word its refusals.

The SDK's schema is built with the ``schema`` library, whose own messages quote its internals
(``<lambda>('x') should evaluate to True``, ``'x' should be instance of 'int'`` for a key that
also takes strings, ``missing key <class 'object'>``). ``check_against_sdk_schema`` finds the
value the schema refuses by walking the schema beside the file, and says in one sentence which
key (its JSON path, ``methods.shap.num_samples``, ``facet[0].name_or_index``) holds what, and
what that key takes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

from .errors import ConfigError

__all__ = ["check_against_sdk_schema", "describe_schema_refusal"]

# Words for the regular expressions of the SDK's schema (its only one: endpoint_name_prefix).
_PATTERN_WORDS = {
    "^[a-zA-Z0-9](-*[a-zA-Z0-9])": "a string that starts with a letter or digit followed, after any hyphens, "
                                   "by another letter or digit",
}
_SINGULAR = {str: "a string", int: "an integer", float: "a number with a decimal point", bool: "true or false",
             dict: "a JSON object", list: "a list", object: "any value", type(None): "null"}
_PLURAL = {str: "strings", int: "integers", float: "numbers with a decimal point", bool: "true or false values",
           dict: "JSON objects", list: "lists", object: "values", type(None): "nulls"}


def _schema_library():
    from schema import And, Optional, Or, Regex, Schema, Use  # the SageMaker SDK's dependency

    return And, Optional, Or, Regex, Schema, Use


def _enumerated(check: Callable) -> tuple | None:
    """The values a schema check such as ``lambda s: s in ("a", "b")`` admits, read from its constants."""
    code = getattr(check, "__code__", None)
    if code is None:
        return None
    for constant in code.co_consts:
        if isinstance(constant, (tuple, frozenset)) and constant and all(isinstance(item, str) for item in constant):
            return tuple(constant) if isinstance(constant, tuple) else tuple(sorted(constant))
    return None


def _join(parts: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b, or c'."""
    parts = list(dict.fromkeys(parts))
    if len(parts) <= 2:
        return " or ".join(parts)
    return ", ".join(parts[:-1]) + ", or " + parts[-1]


def _describe(node, plural: bool = False, nested: bool = False) -> str:
    """What schema ``node`` admits, in words ("a string or an integer", "a list of strings", ...).

    nested: ``node`` describes the items of a list or the values of an object, where lists and
    objects are named without their contents (the walk reaches inside them when they are refused).
    """
    And, Optional, Or, Regex, Schema, Use = _schema_library()
    if isinstance(node, Schema) and not isinstance(node, Optional):
        return _describe(node.schema, plural, nested)
    if isinstance(node, type):
        table = _PLURAL if plural else _SINGULAR
        return table.get(node, f"{'values' if plural else 'a value'} of type {node.__name__}")
    if node is None:
        return "nulls" if plural else "null"
    if isinstance(node, list):
        if nested:
            return _describe(list, plural)
        items = _join([_describe(item, plural=True, nested=True) for item in node])
        return f"lists of {items}" if plural else f"a list of {items}"
    if isinstance(node, dict):
        if nested or all(isinstance(key, (str, Optional)) for key in node):
            return _describe(dict, plural)
        values = _join([_describe(value, plural=True, nested=True) for value in node.values()])
        kind = "non-empty JSON objects" if plural else "a non-empty JSON object"
        return kind if values == "values" else f"{kind} whose values are {values}"
    if isinstance(node, Or):
        parts = []
        for item in node.args:
            text = _describe(item, plural, nested)
            if len(node.args) > 1 and isinstance(item, (list, dict)) and (" or " in text or ", " in text):
                text = _describe(item, plural, nested=True)  # a choice inside a choice reads ambiguously
            parts.append(text)
        return _join(parts)
    if isinstance(node, And):
        any_case = any(isinstance(item, Use) and getattr(item, "_callable", None) is str.lower for item in node.args)
        for item in node.args:
            values = _enumerated(item) if callable(item) and not isinstance(item, (type, Use)) else None
            if values:
                return _values_text(values, any_case)
            if isinstance(item, Regex):
                return _describe(item, plural, nested)
        return _describe(node.args[0], plural, nested) if node.args else "a value"
    if isinstance(node, Regex):
        return _PATTERN_WORDS.get(node.pattern_str, f"a string matching the pattern {node.pattern_str}")
    if isinstance(node, (str, int, float, bool)):
        return repr(node)
    return "values Clarify's schema allows here" if plural else "a value Clarify's schema allows here"


def _values_text(values: Sequence[str], any_case: bool, shown: int = 12) -> str:
    """'a', 'one of a, b, c', 'one of a, ..., l and 118 more'; ' (in any case)' when the schema lower-cases first."""
    if len(values) == 1:
        listed = values[0]
    else:
        listed = "one of " + ", ".join(values[:shown]) + (
            f" and {len(values) - shown} more" if len(values) > shown else "")
    return listed + (" (in any case)" if any_case else "")


def _where(path: Sequence[str]) -> str:
    text = ""
    for part in path:
        text += part if part.startswith("[") or not text else "." + part
    return text or "the file"


def _number_hint(node, value) -> str:
    """' (write 1.0, not 1)' where a whole number misses the decimal point the schema wants, or has one too many."""
    And, Optional, Or, Regex, Schema, Use = _schema_library()
    kinds = list(node.args) if isinstance(node, Or) else [node]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if float in kinds and int not in kinds and isinstance(value, int):
        return f" (write {float(value)!r}, not {value!r})"
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        return f" (write {int(value)}, not {value!r})"
    return ""


def _refusal(node, data, path: list[str], allowed_here: Mapping[str, Sequence[str]]) -> str | None:
    """The first thing schema ``node`` refuses in ``data`` as 'PATH: sentence', or None when it accepts it all."""
    And, Optional, Or, Regex, Schema, Use = _schema_library()
    if Schema(node).is_valid(data):
        return None
    where = _where(path)
    if isinstance(node, dict) and isinstance(data, dict):
        def priority(key) -> int:  # the library tries literal keys before type keys
            inner = key.schema if isinstance(key, Optional) else key
            return 0 if isinstance(inner, str) else 1

        keys = sorted(node, key=priority)
        matched, unknown = set(), []
        for name, value in data.items():
            key = next((key for key in keys if Schema(key).is_valid(name)), None)
            if key is None:
                unknown.append(name)
                continue
            matched.add(key)
            found = _refusal(node[key], value, [*path, str(name)], allowed_here)
            if found:
                return found
        missing = [key for key in keys if not isinstance(key, Optional) and key not in matched]
        if missing and all(isinstance(key, str) for key in missing):
            names = ", ".join(repr(key) for key in missing)
            # a misspelt key is both: say both (review 32: "missing key 'name'" for {"nmae": ...})
            also = f", and unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}" if unknown else ""
            return f"{where}: missing key{'s' if len(missing) > 1 else ''} {names}{also}"
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            return f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {names}"
    elif isinstance(node, Or):
        # a list or an object where the schema takes one kind of list or object: what inside it is refused
        same_kind = [item for item in node.args
                     if (isinstance(item, dict) and isinstance(data, dict)) or (isinstance(item, list) and isinstance(data, list))]
        if len(same_kind) == 1:
            return _refusal(same_kind[0], data, path, allowed_here)
    elif isinstance(node, list) and isinstance(data, list) and node:
        item_node = node[0] if len(node) == 1 else Or(*node)
        for index, item in enumerate(data):
            found = _refusal(item_node, item, [*path, f"[{index}]"], allowed_here)
            if found:
                return found
    allowed = allowed_here.get(where)
    if allowed:
        any_case = isinstance(node, And) and any(isinstance(item, Use) for item in node.args)
        description = _values_text(tuple(allowed), any_case) + " for image explanations"
    else:
        description = _describe(node)
    return f"{where}: it must be {description}, got {data!r}{_number_hint(node, data)}"


def describe_schema_refusal(schema, data, allowed_here: Mapping[str, Sequence[str]] | None = None) -> str:
    """Where and why ``schema`` (a ``schema.Schema`` or its contents) refuses ``data``, in one sentence.

    'PATH: it must be WHAT, got VALUE', 'PATH: missing key 'k'' or 'PATH: unknown key 'k''; PATH
    is the JSON path ('the file' for the top level). ``allowed_here``: for some paths (e.g.
    ``predictor.content_type``), the narrower list of values this tool takes, said instead of
    the schema's. Empty string when ``schema`` accepts ``data``.
    """
    And, Optional, Or, Regex, Schema, Use = _schema_library()
    node = schema.schema if isinstance(schema, Schema) else schema
    return _refusal(node, data, [], allowed_here or {}) or ""


def check_against_sdk_schema(analysis_config, allowed_here: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """Check ``analysis_config`` against the schema of the installed SageMaker SDK.

    Returns the SDK's version when the check ran and passed, None when the SDK is not
    installed (the check was skipped). Raises ConfigError, naming the JSON path and what the
    key takes (``describe_schema_refusal``), when Clarify's processing job would refuse the file.
    """
    try:
        logging.getLogger("sagemaker.config").setLevel(logging.WARNING)  # it logs where it looked for defaults
        # SDK v2's notice to move to v3 (clearsight needs v2), unless the environment asks for it:
        # deploy.aws_clients.require_sagemaker_sdk, which explain/ does not import, does the same
        os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        import sagemaker
        from sagemaker.clarify import ANALYSIS_CONFIG_SCHEMA_V1_0
    except Exception:  # not installed (the explain-only install), or unusable
        return None
    from schema import SchemaError

    try:
        ANALYSIS_CONFIG_SCHEMA_V1_0.validate(analysis_config)
    except SchemaError:
        message = (describe_schema_refusal(ANALYSIS_CONFIG_SCHEMA_V1_0, analysis_config, allowed_here)
                   or "the file: a value Clarify's schema does not allow")
        if message == "the file: unknown key 'label_headers'":
            message += " (Clarify reads class names from predictor.label_headers: move them there)"
        if message == "methods.shap.image_config: unknown key 'overlap'":  # Clarify's 2022 docs still show it
            message += " (the old name of iou_threshold: rename it to iou_threshold)"
        raise ConfigError(f"Clarify's analysis-config schema (SageMaker SDK {sagemaker.__version__}) refuses "
                          f"{message}") from None
    return sagemaker.__version__
