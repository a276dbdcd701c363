"""The failure vocabulary (synth/vocab/*.toml) and `render_failure`: one realistic failed call of a partner.

Shared by the synthetic history generator (training/) and the insurer simulator (service/simulator/).
The TOML files are package data of `synth` (read through importlib.resources, so an installed wheel
finds them as a source checkout does). Files:

- `categories/*.toml`: a `[category]` table (surface shares, latency profile, REST statuses) and
  `[[templates]]` (message texts with `{placeholder}` fields, see `synth.values`);
- `partners.toml`: `[partners.NAME]` styles (kind, channel, code scheme, languages, client stacks,
  body wrapping, status style, client timeout, `since`);
- `codes.toml`: `[schemes.NAME]` code schemes: per category a list of codes (`"CODE@0.6"` appears
  only after 60% of the time range), a `default` code and a `style`;
- `mix.toml`: category weights per operation and per partner kind (used by the generator).

Surfaces: "client" is an exception raised by our own client (no code, no status), "insurer" the
partner's own error answer, "gateway" an HTML/plain page from a proxy or load balancer (no code).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import random
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Final

from model.schema import CATEGORIES
from synth import body as vocab_body
from synth.values import PLACEHOLDERS, fill

SURFACES: Final = ("client", "insurer", "gateway")
LANGUAGES: Final = ("zh", "en", "mixed")
STACKS: Final = ("java", "python", "go", "node")
CHANNELS: Final = ("http", "db", "rpc", "mq", "cache")
PLACEHOLDER_RE: Final = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_CJK_RE: Final = re.compile(r"[\u4e00-\u9fff]")
_WORD_RE: Final = re.compile(r"[A-Za-z]{3,}")
_SUFFIX_RE: Final = re.compile(r"_\d+$")


class VocabularyError(ValueError):
    """A vocabulary file is inconsistent (unknown category, placeholder, scheme, duplicate id...)."""


@dataclass(frozen=True)
class Template:
    id: str
    category: str
    text: str
    lang: str
    surface: str
    stack: str | None = None
    since: float = 0.0
    weight: float = 1.0
    channels: tuple[str, ...] = ("http",)
    kinds: tuple[str, ...] = ()  # partner kinds it fits; empty = any
    schemes: tuple[str, ...] = ()  # code schemes it belongs to (partner-specific wording); empty = any
    code: str | None = None  # fixed code for scheme-specific templates
    status: int | None = None  # fixed HTTP status (required for gateway pages)
    latency: str | None = None  # latency profile overriding the category's
    parts: tuple[str, ...] = field(default=(), repr=False, compare=False)  # literal, name, literal, ...


@dataclass(frozen=True)
class Category:
    name: str
    async_eligible: bool
    templates: tuple[Template, ...]
    surfaces: Mapping[str, float]
    latency: str
    rest_status: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class CodeScheme:
    name: str
    style: str  # numeric | e_prefix | dotted | upper_snake | lower_dotted | http | generic | none
    default: str | None
    codes: Mapping[str, tuple[tuple[str, float], ...]]  # category -> ((code, since), ...)


@dataclass(frozen=True)
class Partner:
    name: str
    kind: str
    code_scheme: str
    languages: Mapping[str, float]
    since: float = 0.0
    channel: str = "http"
    stacks: tuple[str, ...] = ("java",)
    wrap: str = "plain"
    wrap_p: float = 0.0
    status_style: str = "rest"  # rest | always200 | mixed
    timeout_s: float = 3.0
    weight: float = 1.0
    hosts: tuple[str, ...] = ()
    operations: Mapping[str, float] = field(default_factory=dict)
    prefixes: tuple[str, ...] = ()
    prefix_p: float = 0.0
    label: str = ""


@dataclass(frozen=True)
class Vocabulary:
    categories: Mapping[str, Category]
    partners: Mapping[str, Partner]
    schemes: Mapping[str, CodeScheme] = field(default_factory=dict)
    mix: Mapping[str, Any] = field(default_factory=dict)
    _index: dict[tuple[str, str], _Choices] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def templates(self) -> tuple[Template, ...]:
        return tuple(t for c in self.categories.values() for t in c.templates)


@dataclass(frozen=True)
class RenderedFailure:
    category: str
    template_id: str
    surface: str
    error_code: str | None
    error_message: str
    http_status: int | None
    latency_ms: float
    language: str


@dataclass(frozen=True)
class _Choices:
    """Templates of one (partner, category), by surface, sorted by `since` with cumulative weights."""

    surfaces: tuple[str, ...]
    surface_weights: tuple[float, ...]
    by_surface: Mapping[str, tuple[tuple[float, ...], tuple[Template, ...], tuple[float, ...]]]


def default_vocab_dir() -> Traversable:
    """The vocabulary shipped with asyncgate: the `vocab` folder of the `synth` package."""
    return resources.files("synth") / "vocab"


def detect_language(text: str) -> str:
    """zh when the text has Chinese and at most one Latin word, mixed when it has both, else en."""
    plain = PLACEHOLDER_RE.sub("", text)
    if not _CJK_RE.search(plain):
        return "en"
    return "mixed" if len(_WORD_RE.findall(plain)) >= 2 else "zh"


@functools.lru_cache(maxsize=8)
def load_vocabulary(path: Path | Traversable | None = None) -> Vocabulary:
    """Read and check the vocabulary directory (default: `default_vocab_dir()`); cached per path."""
    root = path or default_vocab_dir()
    templates: dict[str, list[Template]] = {name: [] for name in CATEGORIES}
    meta: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    category_files = [f for f in (root / "categories").iterdir() if f.name.endswith(".toml") and f.is_file()]
    if not category_files:
        raise VocabularyError(f"{root}: no categories/*.toml files")
    for file in sorted(category_files, key=lambda f: f.name):
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        table = data.get("category", {})
        file_category = table.get("name")
        if file_category is not None:
            meta[file_category] = table
        for raw in [*data.get("templates", []), *table.get("templates", [])]:
            template = _template(raw, raw.get("category", file_category), file)
            if template.id in seen:
                raise VocabularyError(f"{file.name}: duplicate template id {template.id}")
            seen.add(template.id)
            templates[template.category].append(template)
    categories = {}
    for name, eligible in CATEGORIES.items():
        if name not in meta:
            raise VocabularyError(f"category {name} has no [category] table")
        m = meta[name]
        if m.get("latency", "moderate") not in vocab_body.LATENCY_PROFILES:
            raise VocabularyError(f"category {name} has unknown latency profile {m.get('latency')!r}")
        categories[name] = Category(
            name=name,
            async_eligible=eligible,
            templates=tuple(templates[name]),
            surfaces=dict(m.get("surfaces", {"insurer": 1.0})),
            latency=str(m.get("latency", "moderate")),
            rest_status=tuple((int(s), float(w)) for s, w in m.get("rest_status", [[500, 1.0]])),
        )
    schemes = _schemes(tomllib.loads((root / "codes.toml").read_text(encoding="utf-8")))
    partners = _partners(tomllib.loads((root / "partners.toml").read_text(encoding="utf-8")), schemes)
    mix_file = root / "mix.toml"
    mix = tomllib.loads(mix_file.read_text(encoding="utf-8")) if mix_file.is_file() else {}
    return Vocabulary(categories=categories, partners=partners, schemes=schemes, mix=mix)


def _template(raw: Mapping[str, Any], category: str | None, file: Traversable) -> Template:
    if category not in CATEGORIES:
        raise VocabularyError(f"{file.name}: template {raw.get('id')} has unknown category {category!r}")
    text = str(raw["text"])
    parts = tuple(PLACEHOLDER_RE.split(text))
    unknown = {_base(name) for name in parts[1::2]} - PLACEHOLDERS
    tid = raw["id"] if "." in raw["id"] else f"{category}.{raw['id']}"
    if unknown:
        raise VocabularyError(f"{file.name}: template {tid} uses unknown placeholders {sorted(unknown)}")
    template = Template(
        id=tid,
        category=category,
        text=text,
        lang=raw.get("lang") or detect_language(text),
        surface=raw.get("surface", "insurer"),
        stack=raw.get("stack"),
        since=float(raw.get("since", 0.0)),
        weight=float(raw.get("weight", 1.0)),
        channels=tuple(raw.get("channels", ("http",))),
        kinds=tuple(raw.get("kinds", ())),
        schemes=tuple(raw.get("schemes", ())),
        code=raw.get("code"),
        status=raw.get("status"),
        latency=raw.get("latency"),
        parts=parts,
    )
    problems = [
        template.lang not in LANGUAGES and f"lang {template.lang}",
        template.surface not in SURFACES and f"surface {template.surface}",
        template.stack not in (None, *STACKS) and f"stack {template.stack}",
        template.surface == "gateway" and template.status is None and "gateway page without status",
        not 0.0 <= template.since < 1.0 and f"since {template.since}",
        not set(template.channels) <= set(CHANNELS) and f"channels {template.channels}",
        template.latency not in (None, *vocab_body.LATENCY_PROFILES) and f"latency {template.latency}",
    ]
    bad = [p for p in problems if p]
    if bad:
        raise VocabularyError(f"{file.name}: template {tid}: invalid {', '.join(map(str, bad))}")
    return template


def _base(name: str) -> str:
    """`ip_2` is a second, independent `ip`; a name used twice in one template gets one value."""
    return _SUFFIX_RE.sub("", name)


def _schemes(data: Mapping[str, Any]) -> dict[str, CodeScheme]:
    schemes = {}
    for name, raw in data["schemes"].items():
        codes: dict[str, tuple[tuple[str, float], ...]] = {}
        for category, values in raw.get("codes", {}).items():
            if category not in CATEGORIES:
                raise VocabularyError(f"codes.toml: scheme {name} has unknown category {category}")
            codes[category] = tuple(_code_since(str(v)) for v in values)
        schemes[name] = CodeScheme(name=name, style=raw["style"], default=raw.get("default"), codes=codes)
    return schemes


def _code_since(value: str) -> tuple[str, float]:
    code, _, since = value.rpartition("@") if "@" in value else (value, "", "0")
    return code, float(since)


def _partners(data: Mapping[str, Any], schemes: Mapping[str, CodeScheme]) -> dict[str, Partner]:
    partners = {}
    for name, raw in data["partners"].items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{1,31}", name):
            raise VocabularyError(f"partners.toml: {name!r} is not a short identifier")
        if raw["code_scheme"] not in schemes:
            raise VocabularyError(f"partners.toml: {name} uses unknown code scheme {raw['code_scheme']}")
        if raw.get("wrap", "plain") not in vocab_body.WRAPS:
            raise VocabularyError(f"partners.toml: {name} uses unknown wrap {raw.get('wrap')}")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        partners[name] = Partner(name=name, **fields)
    return partners


def _choices(vocab: Vocabulary, partner: Partner, category: str) -> _Choices:
    key = (partner.name, category)
    cached = vocab._index.get(key)
    if cached is not None:
        return cached
    cat = vocab.categories[category]
    by_surface: dict[str, tuple[tuple[float, ...], tuple[Template, ...], tuple[float, ...]]] = {}
    for surface in SURFACES:
        usable = sorted((t for t in cat.templates if t.surface == surface and _fits(t, partner)), key=lambda t: t.since)
        if usable:
            weights = [t.weight * partner.languages.get(t.lang, 0.0) for t in usable]
            by_surface[surface] = (
                tuple(t.since for t in usable),
                tuple(usable),
                tuple(itertools.accumulate(weights)),
            )
    surfaces = tuple(s for s in SURFACES if s in by_surface and cat.surfaces.get(s, 0.0) > 0)
    if not surfaces:  # the category's usual surfaces don't fit this partner: take whatever fits
        surfaces = tuple(s for s in SURFACES if s in by_surface)
    if not surfaces:
        raise VocabularyError(f"no template of {category} fits partner {partner.name}")
    surface_weights = tuple(itertools.accumulate(cat.surfaces.get(s, 0.0) or 1.0 for s in surfaces))
    choices = _Choices(surfaces, surface_weights, by_surface)
    vocab._index[key] = choices
    return choices


def _fits(t: Template, p: Partner) -> bool:
    return (
        p.channel in t.channels
        and p.languages.get(t.lang, 0.0) > 0
        and (not t.kinds or p.kind in t.kinds)
        and (not t.schemes or p.code_scheme in t.schemes)
        and (t.surface != "client" or t.stack is None or t.stack in p.stacks)
        and (t.surface != "gateway" or p.channel == "http")
    )


def _pick_template(choices: _Choices, rng: random.Random, progress: float) -> Template:
    order = list(range(len(choices.surfaces)))
    first = bisect.bisect_right(choices.surface_weights, rng.random() * choices.surface_weights[-1])
    order.insert(0, order.pop(min(first, len(order) - 1)))
    for i in order:  # the drawn surface, then the others if nothing of it exists yet at `progress`
        sinces, templates, cum = choices.by_surface[choices.surfaces[i]]
        n = bisect.bisect_right(sinces, progress)
        if n and cum[n - 1] > 0:
            return templates[bisect.bisect_right(cum, rng.random() * cum[n - 1], 0, n - 1)]
    return choices.by_surface[choices.surfaces[order[0]]][1][0]  # nothing live yet: the earliest template


def render_failure(
    vocab: Vocabulary,
    partner: str,
    category: str,
    rng: random.Random,
    *,
    progress: float = 1.0,
    timeout_s: float = 3.0,
) -> RenderedFailure:
    """One failure of `partner` in `category` as the platform would log it, at time fraction `progress`.

    Picks a template usable at `progress` in the partner's languages and client stacks, fills its
    placeholders, applies the partner's code scheme and body wrapping, and draws an HTTP status and
    a latency consistent with the category (timeouts cluster at `timeout_s` * 1000 ms).
    """
    p = vocab.partners[partner]
    template = _pick_template(_choices(vocab, p, category), rng, progress)
    return render_template(vocab, partner, template, rng, progress=progress, timeout_s=timeout_s)


def templates_for(vocab: Vocabulary, partner: str, category: str) -> tuple[Template, ...]:
    """Every template `render_failure` may pick for this partner and category (at any time)."""
    choices = _choices(vocab, vocab.partners[partner], category)
    return tuple(t for s in choices.surfaces for t in choices.by_surface[s][1])


def fits(template: Template, partner: Partner) -> bool:
    """True when `partner` can fail with `template` (channel, language, kind, scheme, client stack)."""
    return _fits(template, partner)


def render_template(
    vocab: Vocabulary,
    partner: str,
    template: Template,
    rng: random.Random,
    *,
    progress: float = 1.0,
    timeout_s: float = 3.0,
) -> RenderedFailure:
    """Render one given template as `partner`'s failure (placeholders, code, wrapping, status, latency)."""
    p = vocab.partners[partner]
    ctx = {"timeout_s": str(timeout_s), "host": rng.choice(p.hosts) if p.hosts else ""}
    values: dict[str, str] = {}
    for name in template.parts[1::2]:
        if name not in values:
            values[name] = fill(_base(name), rng, ctx)
    text = "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(template.parts))
    cat = vocab.categories[template.category]
    status = vocab_body.http_status(template, cat, p, rng)
    code: str | None = None
    if template.surface == "insurer":
        code = template.code or vocab_body.pick_code(
            vocab.schemes[p.code_scheme], template.category, status, rng, progress
        )
        text = vocab_body.wrap(p, text, code, status, rng)
    latency = vocab_body.latency_ms(template.latency or cat.latency, template.surface, timeout_s, rng)
    return RenderedFailure(
        category=template.category,
        template_id=template.id,
        surface=template.surface,
        error_code=code,
        error_message=text,
        http_status=status,
        latency_ms=latency,
        language=template.lang,
    )
