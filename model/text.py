"""Text normalization and field tokens: the one mapping from raw failure fields to model tokens.

`normalize_message` turns an error message into the text the character n-grams see: Unicode NFKC
(full-width → half-width), case-folded, with volatile values (ids, numbers, hosts, times) masked so
that "order P2026112400001 timed out after 3000ms" and "order P2026112400977 timed out after 5000ms"
become the same text. `field_features` turns the structured fields into named features.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Final

_MAX_MESSAGE_CHARS: Final = 2_000

# Order matters: the most specific patterns first. Every pattern runs on case-folded text.
_MASKS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"https?://[^\s\"'<>]+"), " <url> "),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), " <email> "),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), " <uuid> "),
    (
        re.compile(
            r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[ t]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2})?"
        ),
        " <ts> ",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), " <ts> "),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), " <ip> "),
    (re.compile(r"\[?(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\]?(?::\d{1,5})?"), " <ip> "),
    (
        re.compile(
            r"\b(?:[a-z0-9-]+\.)+(?:com|cn|net|org|io|local|internal|svc|cluster|xyz|cloud|api)(?::\d{1,5})?\b(?!\.[a-z])"
        ),
        " <host> ",
    ),
    (re.compile(r"(?<![0-9a-z])\d{17}[0-9x](?![0-9a-z])"), " <idno> "),
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), " <phone> "),
    (re.compile(r"\b[0-9a-f]{16,}\b"), " <hex> "),
    (re.compile(r"\b(?=[a-z_-]*\d)(?=\d*[a-z_])[a-z0-9_-]{8,}\b"), " <id> "),
    (re.compile(r"\d+\.\d+"), " <dec> "),
    (re.compile(r"\d{5,}"), " <num> "),
)
_SPACES: Final = re.compile(r"\s+")


#: Keys whose values carry the human-readable reason in JSON, XML and key=value bodies.
_MESSAGE_KEYS: Final = frozenset(
    "message msg errmsg err_msg errormsg error_msg error_message errormessage errordesc error_desc "
    "error_description errdesc err_desc desc description reason detail details resultmsg result_msg rspmsg "
    "respmsg resp_msg retmsg ret_msg returnmsg return_msg sub_msg submsg err_code_des errcodedes tip hint "
    "faultstring statusmessage status_message".split()
)
_FALLBACK_KEYS: Final = frozenset({"error", "status_text", "title"})
_XML_FIELD: Final = re.compile(r"<([A-Za-z_][\w.-]*)>(?:<!\[CDATA\[)?([^<]*?)(?:\]\]>)?</\1>")
_KV_FIELD: Final = re.compile(r"(?:^|[&;,\s])([A-Za-z_]\w*)=([^&;,]*)")


def _json_strings(value: object, keys: frozenset[str], found: list[str], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and str(key).casefold() in keys and item.strip():
                found.append(item)
            elif isinstance(item, dict | list):
                _json_strings(item, keys, found, depth + 1)
    elif isinstance(value, list):
        for item in value[:20]:
            _json_strings(item, keys, found, depth + 1)


def extract_reason(message: str) -> str:
    """The reason inside a structured body: `prefix + message values` of a JSON object, XML fields or
    key=value pairs (`{"timestamp":…,"error":"Internal Server Error","message":"重复投保",…}` → `重复投保`);
    the message unchanged when it is plain text or no message-like field is found."""
    start = message.find("{")
    if start != -1 and message.rstrip().endswith("}"):
        try:
            body = json.loads(message[start:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            found: list[str] = []
            _json_strings(body, _MESSAGE_KEYS, found)
            if not found:
                _json_strings(body, _FALLBACK_KEYS, found)
            if found:
                return " ".join([message[:start].strip(), *found]).strip()
        return message
    if "</" in message:
        fields = [(k.casefold(), v) for k, v in _XML_FIELD.findall(message)]
    elif "=" in message and "&" in message:
        fields = [(k.casefold(), v) for k, v in _KV_FIELD.findall(message)]
    else:
        return message
    found = [v for k, v in fields if k in _MESSAGE_KEYS and v.strip()]
    return " ".join(found) if found else message


#: Contractions spelled out, so "don't retry" and "do not retry" are the same words.
_CONTRACTIONS: Final = (
    (re.compile(r"\b(won|can|ca|wo)['’]t\b"), lambda m: {"won": "will", "wo": "will"}.get(m.group(1), "can") + " not"),
    (re.compile(r"n['’]t\b"), lambda m: " not"),
)
#: Punctuation between words (kept: the `<mask>` brackets and the underscore of snake_case names).
_PUNCTUATION: Final = re.compile(r"[^\w<>\s]+|(?<![a-z0-9])_+|_+(?![a-z0-9])")


def normalize_message(message: str | None) -> str:
    """Reason extracted from a structured body, NFKC, case-folded, volatile values masked, contractions
    spelled out and punctuation turned into spaces; '' when missing. The model's n-grams read this text."""
    if not message:
        return ""
    text = unicodedata.normalize("NFKC", extract_reason(message[:_MAX_MESSAGE_CHARS])).casefold()
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    for contraction, spelled in _CONTRACTIONS:
        text = contraction.sub(spelled, text)
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", text)).strip()


_LETTERS: Final = re.compile(r"[^\W\d_]+")

#: Latin words of two or more letters (and the `<mask>` tokens): what the word n-grams are made of.
WORD_TOKEN_PATTERN: Final = r"<?[a-z]{2,}>?"

# latency bins (ms, upper edges); a timeout clusters just above a whole number of seconds
LATENCY_EDGES_MS: Final = (
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1_000.0,
    2_000.0,
    4_000.0,
    8_000.0,
    15_000.0,
    30_000.0,
)


#: Codes of public, cross-partner standards: they mean the same at every partner, so they are global
#: evidence (gRPC status names and POSIX/libc/Node errno names). Any other code is evidence only inside
#: its own insurer's scheme (`insurer_code=`).
PUBLIC_CODES: Final = frozenset(
    "cancelled unknown invalid_argument deadline_exceeded not_found already_exists permission_denied "
    "resource_exhausted failed_precondition aborted out_of_range unimplemented internal unavailable "
    "data_loss unauthenticated "
    "econnreset econnrefused econnaborted etimedout esockettimedout ehostunreach ehostdown enetunreach "
    "enetdown epipe eai_again enotfound eaddrinuse eaddrnotavail emfile enfile enobufs eproto ecanceled "
    "eagain ewouldblock eio enospc eacces eperm einval".split()
)
_CAMEL: Final = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
#: Words of a code shorter than this are scheme prefixes (`E`, `ERR`, `SYS`), not language.
CODE_WORD_MIN: Final = 4


def code_tokens(code: str | None, insurer: str | None = None) -> list[str]:
    """Tokens of an error code. Global: `code:missing`, the code of a public standard (`code_std=`), and
    the code's words of CODE_WORD_MIN+ letters (`SYSTEM_BUSY` → busy, system). Scoped to the insurer: the
    exact code (`insurer_code=acme|e1001`), since a code means something only inside its own scheme.
    The code's shape (length, leading digit, prefix) is never a feature."""
    if code is None:
        return ["code:missing"]
    raw = unicodedata.normalize("NFKC", code).strip()[:128]
    text = raw.casefold()
    if not text:
        return ["code:missing"]
    tokens = []
    if text in PUBLIC_CODES:
        tokens.append(f"code_std={text}")
    for word in _LETTERS.findall(_CAMEL.sub(" ", raw)):
        if len(word) >= CODE_WORD_MIN:
            tokens.append(f"code_word={word.casefold()}")
    if insurer:
        tokens.append(f"insurer_code={insurer}|{text}")
    return tokens


#: The latency block: a fixed set of columns, the same for every model.
LATENCY_FEATURES: Final = (
    "latency:missing",
    "log_latency",
    *(f"latency_bin={i}" for i in range(len(LATENCY_EDGES_MS) + 1)),
    "latency_at_whole_second",
)
#: A client timeout lands just past a whole number of seconds (within this fraction of a second).
WHOLE_SECOND_SLACK: Final = 0.08


def categorical_tokens(
    insurer: str | None,
    operation: str | None,
    error_code: str | None,
    http_status: int | None,
    *,
    code_hidden: bool = False,
) -> list[str]:
    """Insurer, operation, error-code tokens and HTTP status as one-hot feature names, each once.
    `code_hidden` (training's code dropout) leaves the code's tokens out altogether."""
    insurer_key = (insurer or "").strip().casefold()[:128]
    tokens = [f"operation={(operation or '').strip().casefold()[:64]}"]
    if insurer_key:  # no insurer: no insurer tokens, exactly like an insurer never seen in training
        tokens.append(f"insurer={insurer_key}")
    if not code_hidden:
        tokens.extend(code_tokens(error_code, insurer_key or None))
    if http_status is None:
        tokens.append("status:missing")
    else:
        tokens.append(f"status={http_status}")
        tokens.append(f"status_class={http_status // 100}xx")
    return list(dict.fromkeys(tokens))  # each token once (a code may repeat a word)


def latency_features(latency_ms: float | None) -> dict[str, float]:
    """The latency block for one failure (names from LATENCY_FEATURES)."""
    if latency_ms is None or math.isnan(latency_ms) or latency_ms < 0:
        return {"latency:missing": 1.0}
    feats = {"log_latency": math.log1p(latency_ms) / 10.0, f"latency_bin={latency_bin(latency_ms)}": 1.0}
    seconds = latency_ms / 1000.0
    if seconds >= 1.0 and seconds - math.floor(seconds) < WHOLE_SECOND_SLACK:
        feats["latency_at_whole_second"] = 1.0
    return feats


def field_features(
    insurer: str | None,
    operation: str | None,
    error_code: str | None,
    http_status: int | None,
    latency_ms: float | None,
) -> dict[str, float]:
    """All structured fields of one failure as named features (one-hot tokens and the latency block)."""
    feats = dict.fromkeys(categorical_tokens(insurer, operation, error_code, http_status), 1.0)
    feats.update(latency_features(latency_ms))
    return feats


def latency_bin(latency_ms: float) -> int:
    for index, edge in enumerate(LATENCY_EDGES_MS):
        if latency_ms < edge:
            return index
    return len(LATENCY_EDGES_MS)
