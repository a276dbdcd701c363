"""What the simulated insurer does with one call: a Plan, from the request's script or the scenario.

Scripted (tests): `payload["sim"] = {"script": [step, ...], "delay_s": 10, "latency_ms": 0}`; the
Nth call of an Idempotency-Key plays step N, the last step repeating. Steps:

    success                 complete the order and answer 200 {"success": true, "data": {...}}
    <category>              a protocol failure of that category (model/schema.py CATEGORIES), worded
                            by the shared vocabulary in the partner style, with its status
    timeout                 sleep delay_s without completing, then a 504 gateway page (the step
                            wins over the category of the same name)
    complete_then_timeout   complete the order, sleep delay_s, then answer the success
    html_502, html_504      a proxy's HTML error page with that status
    malformed               200 with a body that is not JSON
    reset                   drop the connection without an answer (transport.abort(): the client
                            sees ReadError or RemoteProtocolError, depending on the event loop)

`latency_ms` delays every scripted answer (default 0). Without a script, the scenario decides,
drawing from one seeded random source (same seed and call order, same answers):

    normal      ~87% success (log-normal latency, median 80 ms), 8% transient, 5% business rejection
    flaky       ~40% transient failures
    slow        median 1.5 s, a long tail past typical client timeouts (completes when it answers)
    outage      20 s healthy, then 10 s down (503 maintenance or hanging), and again
    throttle    429 "too many requests" above THROTTLE_RPS calls per second
    fast        no sleep, always success (benchmarks)
    new-codes   more failures (15% + 8%), worded by the insurer style that appears latest in history
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from model.schema import CATEGORIES
from service.errors import AsyncgateError
from synth.vocabulary import Vocabulary, VocabularyError, load_vocabulary, render_failure

Action = Literal["success", "failure", "page", "malformed", "hang", "complete_then_hang", "reset"]

SCENARIOS: Final = ("normal", "flaky", "slow", "outage", "throttle", "fast", "new-codes")
STEPS: Final = (
    "success",
    "timeout",
    "complete_then_timeout",
    "html_502",
    "html_504",
    "malformed",
    "reset",
    *CATEGORIES,
)
DEFAULT_DELAY_S: Final = 10.0
MAX_LATENCY_S: Final = 30.0  # no rendered latency sleeps longer than this
HANG_S: Final = 30.0  # how long a scenario "timeout" keeps the request open
OUTAGE_UP_S: Final = 20.0
OUTAGE_DOWN_S: Final = 10.0
THROTTLE_RPS: Final = 20
#: (transient, business rejection) probabilities per scenario
_FAILURE_RATES: Final[dict[str, tuple[float, float]]] = {
    "normal": (0.08, 0.05),
    "flaky": (0.40, 0.05),
    "slow": (0.08, 0.05),
    "outage": (0.08, 0.05),
    "throttle": (0.08, 0.05),
    "fast": (0.0, 0.0),
    "new-codes": (0.15, 0.08),
}
#: (median ms, sigma) of the log-normal success latency per scenario
_SUCCESS_LATENCY: Final[dict[str, tuple[float, float]]] = {"slow": (1500.0, 0.8), "flaky": (120.0, 0.7)}
_NORMAL_LATENCY: Final = (80.0, 0.6)
_TRANSIENT: Final = {
    "insurer_busy": 0.30,
    "timeout": 0.20,
    "dependency": 0.15,
    "lock_contention": 0.10,
    "pending_unknown": 0.10,
    "throttling": 0.10,
    "maintenance": 0.05,
}
_BUSINESS: Final = {
    "validation": 0.25,
    "underwriting_decline": 0.20,
    "identity_mismatch": 0.15,
    "payment_declined": 0.15,
    "duplicate_or_closed": 0.10,
    "product_unavailable": 0.10,
    "auth_config": 0.05,
}
_GATEWAY_PAGE: Final = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS: Final = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}


class ScriptError(AsyncgateError, ValueError):
    """Invalid simulator script: {problem}

    payload["sim"] is not a valid script.
    """


class SimulatorConfigError(AsyncgateError, ValueError):
    """Cannot set up the simulator: {problem}

    An unknown scenario or partner style, or a vocabulary that cannot word an answer.
    """


@dataclass(frozen=True)
class Script:
    steps: tuple[str, ...]
    delay_s: float = DEFAULT_DELAY_S
    latency_s: float = 0.0

    def step(self, n: int) -> str:
        """Step for the Nth call (1-based); the last step repeats."""
        return self.steps[min(n, len(self.steps)) - 1]


@dataclass(frozen=True)
class Plan:
    """One answer: sleep `delay_s`, then act (for hangs, `delay_s` is how long the request stays open)."""

    action: Action
    delay_s: float = 0.0
    status: int = 200
    error_code: str | None = None
    error_message: str = ""
    body: str = ""
    label: str = ""  # the step, or category/template id, for the X-Sim-Plan header


def parse_script(payload: Mapping[str, Any]) -> Script | None:
    """The script in payload["sim"], None without one; ScriptError when it is malformed."""
    sim = payload.get("sim")
    if sim is None:
        return None
    if not isinstance(sim, dict):
        raise ScriptError(problem='payload["sim"] must be an object')
    steps = sim.get("script")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise ScriptError(problem='payload["sim"]["script"] must be a non-empty list of step names')
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ScriptError(problem=f"unknown step(s) {unknown}; known: {list(STEPS)}")
    return Script(tuple(steps), _seconds(sim, "delay_s", DEFAULT_DELAY_S), _seconds(sim, "latency_ms", 0.0) / 1000)


def _seconds(sim: Mapping[str, Any], key: str, default: float) -> float:
    value = sim.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ScriptError(problem=f'payload["sim"]["{key}"] must be a number >= 0')
    return float(value)


def gateway_page(status: int) -> str:
    """An nginx-style HTML error page."""
    return _GATEWAY_PAGE.format(status=status, reason=_REASONS.get(status, "Error"))


class Behaviour:
    """Turns a call into a Plan; holds the scenario, the seeded random source and the partner styles."""

    def __init__(
        self,
        *,
        scenario: str,
        seed: int,
        style: str | None,
        vocabulary: Callable[[], Vocabulary] = load_vocabulary,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seed = seed
        self._vocabulary = vocabulary
        self._clock = clock
        vocab = vocabulary()
        self.style = style if style is not None else default_style(vocab)
        if self.style not in vocab.partners:
            raise SimulatorConfigError(problem=f"unknown style {self.style!r}; known: {sorted(vocab.partners)}")
        self.novel_style = novel_style(vocab, exclude=self.style)
        self.scenario = "normal"
        self.switch(scenario)
        self.reset()
        self.check()

    def switch(self, scenario: str) -> None:
        """Change the scenario at runtime; the outage clock restarts."""
        if scenario not in SCENARIOS:
            raise SimulatorConfigError(problem=f"unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
        self.scenario = scenario
        self._since = self._clock()

    def reset(self) -> None:
        """Re-seed the random source and forget throttling and outage timing."""
        self._rng = random.Random(self.seed)
        self._arrivals: deque[float] = deque()
        self._since = self._clock()

    def scripted(self, script: Script, n: int) -> Plan:
        """The plan of step N of the script."""
        step = script.step(n)
        lat = script.latency_s
        if step == "success":
            return Plan("success", lat, label=step)
        if step == "timeout":
            return Plan("hang", script.delay_s, label=step)
        if step == "complete_then_timeout":
            return Plan("complete_then_hang", script.delay_s, label=step)
        if step in ("html_502", "html_504"):
            status = int(step[-3:])
            return Plan("page", lat, status=status, body=gateway_page(status), label=step)
        if step == "malformed":
            body = '{"success":false,"error_code":"9999","error_message":"系统异常'
            return Plan("malformed", lat, body=body, label=step)
        if step == "reset":
            return Plan("reset", lat, label=step)
        plan = self.render(step, self.style)
        return Plan(plan.action, lat, plan.status, plan.error_code, plan.error_message, plan.body, plan.label)

    def plan(self) -> Plan:
        """The scenario's answer to the next call."""
        now = self._clock()
        if self.scenario == "fast":
            return Plan("success", label="success")
        if self.scenario == "outage" and self.down(now):
            if self._rng.random() < 0.35:
                return Plan("hang", HANG_S, label="outage:hang")
            return self.render("maintenance", self.style, status=503)
        if self.scenario == "throttle" and self._throttled(now):
            return self.render("throttling", self.style, status=429)
        transient, business = _FAILURE_RATES[self.scenario]
        style = self.novel_style if self.scenario == "new-codes" else self.style
        u = self._rng.random()
        if u < transient:
            category = _draw(self._rng, _TRANSIENT)
            if category == "timeout" and self._rng.random() < 0.3:
                return Plan("hang", HANG_S, label="timeout:hang")
            return self.render(category, style)
        if u < transient + business:
            return self.render(_draw(self._rng, _BUSINESS), style)
        median, sigma = _SUCCESS_LATENCY.get(self.scenario, _NORMAL_LATENCY)
        latency_s = median * math.exp(self._rng.gauss(0.0, sigma)) / 1000
        return Plan("success", min(latency_s, MAX_LATENCY_S), label="success")

    def down(self, now: float | None = None) -> bool:
        """In the outage scenario: whether this moment falls in a down period."""
        if self.scenario != "outage":
            return False
        elapsed = (self._clock() if now is None else now) - self._since
        return elapsed % (OUTAGE_UP_S + OUTAGE_DOWN_S) >= OUTAGE_UP_S

    def render(self, category: str, style: str, *, status: int | None = None) -> Plan:
        """A failure of `category` worded by the vocabulary in `style`: a protocol body or a gateway page.

        Client-side renders (exceptions our own client would raise) cannot be an answer; when a
        category has nothing else, the network failure itself is played (a hang or a reset).
        """
        vocab = self._vocabulary()
        timeout_s = vocab.partners[style].timeout_s
        for _ in range(32):
            try:
                r = render_failure(vocab, style, category, self._rng, timeout_s=timeout_s)
            except VocabularyError:
                break  # nothing of this category fits the style
            delay = min(r.latency_ms / 1000, MAX_LATENCY_S)
            label = f"{category}:{r.template_id}"
            if r.surface == "insurer":
                code = status or r.http_status or _rest_status(vocab, category)
                return Plan("failure", delay, code, r.error_code, r.error_message, label=label)
            if r.surface == "gateway":
                code = status or r.http_status or 502
                body = r.error_message if r.error_message.lstrip().startswith("<") else _html(code, r.error_message)
                return Plan("page", delay, code, body=body, label=label)
        if category == "timeout":
            return Plan("hang", HANG_S, label=f"{category}:hang")
        if category == "connection":
            return Plan("reset", 0.0, label=f"{category}:reset")
        raise SimulatorConfigError(problem=f"the vocabulary cannot word {category} as an answer of style {style!r}")

    def check(self) -> None:
        """Fail now (SimulatorConfigError) if a category cannot be worded in the styles in use."""
        saved = self._rng
        try:
            self._rng = random.Random(0)
            for style in {self.style, self.novel_style}:
                for category in CATEGORIES:
                    self.render(category, style)
        finally:
            self._rng = saved

    def _throttled(self, now: float) -> bool:
        arrivals = self._arrivals
        arrivals.append(now)
        while arrivals and arrivals[0] <= now - 1.0:
            arrivals.popleft()
        return len(arrivals) > THROTTLE_RPS


def default_style(vocab: Vocabulary) -> str:
    """The style used when none is given: the heaviest REST-style HTTP insurer present from the start."""
    candidates = sorted(
        (p.status_style != "rest", -p.weight, name)
        for name, p in vocab.partners.items()
        if p.channel == "http" and p.kind.startswith("insurer") and p.since == 0
    )
    if not candidates:
        raise SimulatorConfigError(problem="the vocabulary has no HTTP insurer style present from the start")
    return candidates[0][2]


def novel_style(vocab: Vocabulary, *, exclude: str) -> str:
    """The HTTP insurer style that appears latest in the history (the least seen in training)."""
    candidates = sorted(
        (-p.since, name)
        for name, p in vocab.partners.items()
        if p.channel == "http" and p.kind.startswith("insurer") and name != exclude
    )
    return candidates[0][1] if candidates else exclude


def _rest_status(vocab: Vocabulary, category: str) -> int:
    statuses = vocab.categories[category].rest_status
    return max(statuses, key=lambda sw: sw[1])[0] if statuses else 500


def _html(status: int, text: str) -> str:
    return f"<html><head><title>{status}</title></head><body><h1>{status}</h1><p>{text}</p></body></html>"


def _draw(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    cum = list(itertools.accumulate(weights.values()))
    return names[bisect.bisect_right(cum, rng.random() * cum[-1], 0, len(cum) - 1)]
