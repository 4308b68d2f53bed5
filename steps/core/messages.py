"""ICU MessageFormat for the text layers: check a message, fill it for a child, plural rules.

A layer's text is an ICU message over exactly four variables: ``child_name``, ``child_age``
(plural, with the CLDR rules of the book's language), ``child_gender`` (select: girl, boy,
other) and ``dedication``. ICU itself (PyICU, the ``icu`` module) parses and formats; this
module adds what ICU does not check: unknown variables, the language's plural categories,
duplicate or never-matching keys. Values are passed as arguments, never spliced into the
pattern, so a name with braces, apostrophes or markup is printed as typed.

``icu`` is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from steps.core.errors import InputError

VARIABLES = ("child_name", "child_age", "child_gender", "dedication")
GENDER_KEYS = ("girl", "boy", "other")
MAX_DEDICATION = 300
# What each variable may be used as: plain ``{x}``, a plural, a select, ``{x, number}``.
_USES = {"child_name": {"none"}, "dedication": {"none"}, "child_gender": {"select"},
         "child_age": {"none", "plural", "number"}}
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
# ICU error codes PyICU has no text for (its ICUError.messages maps them to None).
_ICU_ERRORS = {65799: "a pattern syntax error", 65801: "braces that do not match",
               65804: "an argument of the wrong type", 65805: "a key used twice",
               65806: "an unknown key", 65807: "a select or plural without an 'other' case",
               65808: "a bad number"}


@dataclass(frozen=True)
class Child:
    """The values a message is filled with."""

    name: str
    age: int
    gender: str = "unspecified"      # girl | boy | unspecified (the select's ``other``)
    dedication: str = ""

    def arguments(self) -> dict[str, object]:
        return {"child_name": self.name, "child_age": self.age,
                "child_gender": self.gender if self.gender in ("girl", "boy") else "other",
                "dedication": self.dedication}


def check_language(code: str) -> str:
    """A language code ICU knows (``uk``, ``en``, ``pt-BR``); ValueError otherwise."""
    from icu import Locale

    if not isinstance(code, str) or not _LANGUAGE.fullmatch(code):
        raise ValueError(f"language {str(code)[:20]!r} is not a language code; use one like en or uk")
    if code.split("-")[0] not in Locale.getISOLanguages():
        raise ValueError(f"language {code!r} is not a language ICU knows; use an ISO 639 code")
    return code


@lru_cache(maxsize=64)
def plural_categories(language: str) -> frozenset[str]:
    """The CLDR plural categories of a language (``uk``: one, few, many, other)."""
    from icu import Locale, PluralRules

    return frozenset(PluralRules.forLocale(Locale(language)).getKeywords())


@lru_cache(maxsize=64)
def age_categories(language: str) -> dict[str, list[int]]:
    """The plural categories ages 0-17 fall into, with the ages of each (``uk``: one [1, …])."""
    from icu import Locale, PluralRules

    rules = PluralRules.forLocale(Locale(language))
    found: dict[str, list[int]] = {}
    for age in range(18):
        found.setdefault(rules.select(age), []).append(age)
    return found


def script_of(language: str) -> str:
    """The likely script of a language (``uk`` -> ``Cyrl``)."""
    from icu import Locale

    return Locale(language).addLikelySubtags().getScript() or "Zyyy"


def letters_of(language: str) -> str:
    """The language's letters (CLDR exemplar characters), lower case, in order."""
    from icu import LocaleData, ULocaleDataExemplarSetType

    letters = LocaleData(language).getExemplarSet(0, ULocaleDataExemplarSetType.ES_STANDARD)
    return "".join(c for c in letters if len(c) == 1 and unicodedata.category(c) == "Ll")


def _describe(error: Any, pattern: str) -> str:
    # PyICU: error.args == (code, (message, line, offset, pre, post)); element 0 is a NULL
    # pointer for some codes and touching it crashes the interpreter: read 2 only.
    code = error.getErrorCode()
    offset = 0
    if len(error.args) > 1 and isinstance(error.args[1], tuple):
        offset = error.args[1][2] if isinstance(error.args[1][2], int) else 0
    start = max(0, min(offset, len(pattern)) - 1)
    near = pattern[start:start + 30]
    return f"{_ICU_ERRORS.get(code, f'ICU error {code}')} near {near!r}"


def _arguments(pattern: str) -> list[tuple[str, str, list[str]]]:
    """(name, use, keys) of every argument, nested ones too; raises icu.ICUError on bad syntax."""
    from icu import MessagePattern
    from icu import UMessagePatternArgType as AT
    from icu import UMessagePatternPartType as PT

    kinds = {AT.NONE: "none", AT.SIMPLE: "simple", AT.SELECT: "select", AT.PLURAL: "plural",
             AT.SELECTORDINAL: "selectordinal", AT.CHOICE: "choice"}
    mp = MessagePattern(pattern)
    found = []
    for i in range(mp.countParts()):
        part = mp.getPart(i)
        if part.getType() != PT.ARG_START:
            continue
        kind = kinds.get(part.getArgType(), "other")
        name = mp.getSubstring(mp.getPart(i + 1))
        keys: list[str] = []
        if kind in ("select", "plural", "selectordinal"):
            j, limit = i + 2, mp.getLimitPartIndex(i)
            while j < limit:
                p = mp.getPart(j)
                if p.getType() == PT.ARG_SELECTOR:
                    keys.append(mp.getSubstring(p))
                elif p.getType() == PT.MSG_START:
                    j = mp.getLimitPartIndex(j)  # a nested message: its own args come later
                j += 1
        elif kind == "simple":
            kind = mp.getSubstring(mp.getPart(i + 2)).strip()   # number, date, plurl, ...
        found.append((name, kind, keys))
    return found


def problems(pattern: str, language: str) -> list[str]:
    """What is wrong with a message for a language, one phrase each (empty: it is fine)."""
    from icu import ICUError, Locale, MessageFormat

    try:
        arguments = _arguments(pattern)
    except ICUError as e:
        return [f"{_describe(e, pattern)}; write it as an ICU message (literal braces in "
                "quotes: '{'…'}')"]
    out = []
    categories = plural_categories(language)
    for name, kind, keys in arguments:
        if name not in VARIABLES:
            out.append(f"unknown variable {{{name}}}; use one of "
                       + ", ".join(f"{{{v}}}" for v in VARIABLES))
            continue
        if kind not in _USES[name]:
            uses = {"none": f"plain {{{name}}}", "select": "a select", "plural": "a plural",
                    "number": "a number"}
            out.append(f"{{{name}}} is used as {'plain text' if kind == 'none' else kind}; use it "
                       "as " + " or ".join(uses[u] for u in sorted(_USES[name])))
            continue
        if len(set(keys)) != len(keys):
            out.append(f"the {kind} on {{{name}}} lists a key twice ({', '.join(keys)}); list each once")
        if kind == "select":
            if unknown := [k for k in keys if k not in GENDER_KEYS]:
                out.append(f"the select on {{child_gender}} has the case(s) {', '.join(unknown)} "
                           "that never occur; use girl, boy and other")
            if "other" not in keys:
                out.append("the select on {child_gender} has no other case; add other {…}")
        if kind == "plural":
            named = {k for k in keys if not k.startswith("=")}
            if missing := sorted(categories - named):
                out.append(f"the plural on {{child_age}} lacks the {language} categories "
                           f"{', '.join(missing)}; add them (the {language} categories are "
                           f"{', '.join(sorted(categories))})")
            if extra := sorted(named - categories):
                out.append(f"the plural on {{child_age}} has the categories {', '.join(extra)}, "
                           f"which {language} does not have; use {', '.join(sorted(categories))}")
    if not out:
        try:
            MessageFormat(pattern, Locale(language))
        except ICUError as e:
            out.append(f"ICU refuses it: {_describe(e, pattern)}; correct the message")
    return out


@lru_cache(maxsize=1024)
def _compiled(pattern: str, language: str) -> Any:
    from icu import Locale, MessageFormat

    return MessageFormat(pattern, Locale(language))


def fill(pattern: str, language: str, child: Child) -> str:
    """The message with the child's values (checked at load time, so this does not fail)."""
    from icu import Formattable

    values = child.arguments()
    text: str = _compiled(pattern, language).format(list(values),
                                                    [Formattable(v) for v in values.values()])
    return text


def validate_dedication(text: str | None) -> str:
    """A dedication as typed: any script, newlines kept (CRLF -> LF), up to 300 characters."""
    text = unicodedata.normalize("NFC", (text or "").replace("\r\n", "\n").replace("\r", "\n"))
    text = text.strip()
    bad = [c for c in text if c not in "\n" and (unicodedata.category(c) in ("Cc", "Cs", "Co")
                                                 or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069")]
    if bad:
        raise InputError("bad_dedication", "The dedication contains control characters "
                                           f"(U+{ord(bad[0]):04X}); type it as plain text with "
                                           "line breaks only.")
    if len(text) > MAX_DEDICATION:
        raise InputError("bad_dedication", f"The dedication is {len(text)} characters long; "
                                           f"shorten it to at most {MAX_DEDICATION}.")
    return text


def variables(pattern: str) -> frozenset[str]:
    """The variables a (valid) message uses."""
    return frozenset(name for name, _, _ in _arguments(pattern))
