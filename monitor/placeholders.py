"""One-pass placeholder substitution, wherever a configured template meets data.

`{phone}`, `{text}`, `{secret}` ... are replaced in a single scan of the template, so a value is never
scanned again: a dossier whose procedure name reads `Cap phep {secret}` stays exactly that text and can
never pull a gateway key into an SMS. Replacing placeholders one after another (`str.replace` in a loop)
has exactly that hole, which is why every template in the project goes through `fill_placeholders`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["fill_placeholders"]


def _pattern(names: Mapping[str, str]) -> re.Pattern[str]:
    # Longest names first so `{id}` never shadows a longer name starting the same way.
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(r"\{(" + alternatives + r")\}")


def fill_placeholders(
    template: Any, values: Mapping[str, str], *, encode: Callable[[str], str] | None = None
) -> Any:
    """`template` (a string, or dicts and lists of them) with each `{name}` of `values` replaced once.

    Keys of `values` are bare names (`"phone"`, not `"{phone}"`). Unknown `{...}` groups and non-string
    leaves are kept as they are; `encode` (e.g. URL quoting) is applied to each value as it is inserted.
    """
    if not values:
        return template
    pattern = _pattern(values)
    inserted = {name: encode(value) if encode else value for name, value in values.items()}

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return pattern.sub(lambda match: inserted[match.group(1)], node)
        if isinstance(node, dict):
            return {key: fill(item) for key, item in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        return node

    return fill(template)
