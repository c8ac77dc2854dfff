"""ADetailer's fields in AUTOMATIC1111 infotext: read them from, and write them into, a
``parameters`` text.

ADetailer (Bing-su/adetailer, the "After Detailer" extension of the AUTOMATIC1111 web UI)
detects faces (or hands, people) after generation and inpaints each detection again at its
own prompt and denoising strength. It records what it did as ``Key: value`` pairs on the
infotext's last line, named as in its ``adetailer/args.py`` (``_all_args``): ``ADetailer
model``, ``ADetailer prompt``, ``ADetailer confidence``, ``ADetailer denoising strength``, ...
and ``ADetailer version``. A second and later detection pass (ADetailer's tabs) carry an
ordinal suffix: ``ADetailer model 2nd``, ``ADetailer prompt 3rd`` (``adetailer/ui.py``,
``suffix``). It leaves out an empty prompt or negative prompt, and the padding unless
"inpaint only masked" is on. Values with a comma, a colon, a quote or a line break are JSON
strings, as A1111 quotes every infotext value.

Torch-free; only the fields Studio's detail pass uses are typed, the rest are kept as text
(``ADetailerUnit.other``) so a round trip loses nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# AUTOMATIC1111's infotext key/value pattern (modules/infotext_utils.py).
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_KEY = re.compile(r"^ADetailer (?P<field>.+?)(?: (?P<n>\d+)(?:st|nd|rd|th))?$")

PREFIX = "ADetailer"
VERSION_KEY = "ADetailer version"
# (attribute, infotext field after "ADetailer "), in ADetailer's _all_args order.
FIELDS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("prompt", "prompt"),
    ("negative_prompt", "negative prompt"),
    ("confidence", "confidence"),
    ("dilate_erode", "dilate erode"),
    ("mask_blur", "mask blur"),
    ("denoising_strength", "denoising strength"),
    ("inpaint_only_masked", "inpaint only masked"),
    ("inpaint_padding", "inpaint padding"),
)
_ATTR_OF = {name: attr for attr, name in FIELDS}


@dataclass(frozen=True)
class ADetailerUnit:
    """One ADetailer detection pass. Defaults are ADetailer's (``ADetailerArgs``)."""

    model: str = "None"
    prompt: str = ""
    negative_prompt: str = ""
    confidence: float = 0.3
    dilate_erode: int = 4
    mask_blur: int = 4
    denoising_strength: float = 0.4
    inpaint_only_masked: bool = True
    inpaint_padding: int = 32
    #: the pass's other ADetailer fields, (field name after "ADetailer ", raw text)
    other: tuple[tuple[str, str], ...] = field(default=())


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    ends = {1: "st", 2: "nd", 3: "rd"}
    return f"{n}{'th' if 11 <= n % 100 <= 13 else ends.get(n % 10, 'th')}"


def suffix(index: int) -> str:
    """The key suffix of the pass at ``index`` (0-based): "" for the first, " 2nd", ..."""
    return "" if index == 0 else " " + ordinal(index + 1)


def _quote(text: str) -> str:
    if any(c in text for c in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _unquote(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            return str(json.loads(value))
        except json.JSONDecodeError:
            return value[1:-1]
    return value


def _text(value: object) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _typed(attr: str, text: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            return text.strip().lower() == "true"
        if isinstance(default, int):
            return int(float(text))
        if isinstance(default, float):
            return float(text)
    except ValueError:
        return default
    return text


def parse_pairs(text: str) -> dict[str, str]:
    """The ``Key: value`` pairs (values unquoted) of an infotext's last line."""
    last = (text or "").strip().split("\n")[-1]
    return {k.strip(): _unquote(v) for k, v in _RE_PARAM.findall(last)}


def parse_adetailer(text_or_pairs: str | dict[str, str]) -> tuple[list[ADetailerUnit], str | None]:
    """The ADetailer passes recorded in an infotext (or its parsed pairs), in order, and the
    ``ADetailer version`` (None when absent). A pass without ``ADetailer model`` is not one."""
    pairs = parse_pairs(text_or_pairs) if isinstance(text_or_pairs, str) else text_or_pairs
    version = pairs.get(VERSION_KEY)
    found: dict[int, dict[str, str]] = {}
    for key, value in pairs.items():
        if key == VERSION_KEY:
            continue
        m = _RE_KEY.match(key)
        if m is None:
            continue
        index = int(m.group("n")) - 1 if m.group("n") else 0
        found.setdefault(index, {})[m.group("field")] = value
    defaults = ADetailerUnit()
    units = []
    for index in sorted(found):
        raw = found[index]
        if "model" not in raw:
            continue
        values: dict[str, object] = {}
        other = []
        for name, text in raw.items():
            attr = _ATTR_OF.get(name)
            if attr is None:
                other.append((name, text))
            else:
                values[attr] = _typed(attr, text, getattr(defaults, attr))
        units.append(ADetailerUnit(**values, other=tuple(other)))
    return units, version


def adetailer_pairs(units: Iterable[ADetailerUnit], version: str | None = None) -> dict[str, str]:
    """{infotext key: text} for ``units`` with ADetailer's rules for what is left out."""
    out: dict[str, str] = {}
    for index, unit in enumerate(units):
        end = suffix(index)
        for attr, name in FIELDS:
            value = getattr(unit, attr)
            if attr in ("prompt", "negative_prompt") and not value:
                continue
            if attr == "inpaint_padding" and not unit.inpaint_only_masked:
                continue
            out[f"{PREFIX} {name}{end}"] = _text(value)
        for name, text in unit.other:
            out[f"{PREFIX} {name}{end}"] = text
    if version:
        out[VERSION_KEY] = version
    return out


def format_adetailer(units: Iterable[ADetailerUnit], version: str | None = None) -> str:
    """The ADetailer ``Key: value`` pairs of ``units`` as infotext (one line, no newline)."""
    return ", ".join(f"{k}: {_quote(v)}" for k, v in adetailer_pairs(units, version).items())


def with_adetailer(
    parameters: str | None, units: Iterable[ADetailerUnit], version: str | None = None
) -> str:
    """``parameters`` with the ADetailer pairs of ``units`` on its key/value line (any
    ADetailer pairs already there are replaced); a line of their own when it has none."""
    extra = format_adetailer(units, version)
    text = (parameters or "").rstrip("\n")
    if not text.strip():
        return extra
    lines = text.split("\n")
    pairs = _RE_PARAM.findall(lines[-1])
    if len(pairs) >= 3:  # A1111's rule for a key/value line
        kept = [f"{k.strip()}: {v.strip()}" for k, v in pairs if not k.strip().startswith(PREFIX)]
        lines[-1] = ", ".join(kept + ([extra] if extra else []))
    elif extra:
        lines.append(extra)
    return "\n".join(lines)
