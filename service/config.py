"""Settings: one pydantic-settings object, from CLI flags and ASYNCGATE_* environment variables.

The CLI builds it once and passes it on (`create_app(settings)`, `run_worker(settings)`); nothing
reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything asyncgate's service, worker and demo can be told."""

    model_config = SettingsConfigDict(env_prefix="ASYNCGATE_", extra="ignore", protected_namespaces=())

    # where local state lives: the SQLite file and the default model registry
    state_dir: Path = Path(".asyncgate")
    db_url: str = ""  # empty: sqlite:///<state_dir>/asyncgate.db
    model_dir: Path | None = None  # None: <state_dir>/models
    insurers_file: Path | None = None  # None: ./insurers.toml when it exists, else no insurers

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)

    # the default model, trained on first use when the registry is empty
    default_train_rows: int = Field(default=60_000, ge=1_000)
    default_train_seed: int = 7

    # re-execution schedule (docs/contract.md §1)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    retry_max_attempts: int = Field(default=8, ge=1)
    retry_max_age_s: float = Field(default=86_400.0, gt=0)

    # worker
    lease_s: float = Field(default=60.0, gt=0)
    worker_batch: int = Field(default=100, ge=1, le=10_000)
    worker_concurrency: int = Field(default=16, ge=1, le=1_000)
    worker_poll_s: float = Field(default=1.0, gt=0)

    # how each process guards an insurer that fails (service/health.py): "adaptive" throttling (calls in
    # proportion to what the insurer accepts: p = max(0, (requests - K*accepts) / (requests + 1)) over the
    # last `throttle_window_s`, nothing refused below `throttle_min_requests`), the on/off "breaker", or "none"
    insurer_guard: Literal["adaptive", "breaker", "none"] = "adaptive"
    throttle_k: float = Field(default=2.0, gt=0)
    throttle_window_s: float = Field(default=120.0, gt=0)
    throttle_min_requests: int = Field(default=20, ge=0)

    # per-insurer circuit breaker (insurer_guard "breaker"): `breaker_failures` failed calls among the last
    # `breaker_window` open it for `breaker_cooldown_s`; then `breaker_probes` calls at a time probe it; with
    # shared_state, a trip or a successful probe in any process applies to every process (service/health.py)
    # defaults ask for a real outage (half of the last 100 calls), not a burst of ordinary failures
    breaker_window: int = Field(default=100, ge=1, le=10_000)
    breaker_failures: int = Field(default=50, ge=0)  # 0 disables the breaker
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    breaker_probes: int = Field(default=1, ge=1)

    # retry budget per insurer, shared by every worker on the database (see `retry_budget_share` below):
    # the floor of its rate in re-executions per second (0: unlimited), and the burst
    retry_rate_per_s: float = Field(default=20.0, ge=0)
    retry_burst: int = Field(default=20, ge=1)

    # operators' rules (service/rules.py): each process flushes its hit counts and checks the rule set's
    # version this often; a change made elsewhere applies within this plus one reload (docs/contract.md §7: 5 s)
    rules_poll_s: float = Field(default=1.0, gt=0, le=4.0)

    # API keys: "KEY:ROLE[:NAME],..." with ROLE read, write or admin (see service/api/auth.py);
    # empty: no authentication (then `serve` refuses a non-loopback host unless --insecure)
    api_keys: str = Field(default="", repr=False)

    # database pool (per process)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)

    # outbound HTTP to insurers: the most connections open to one insurer (a pool per insurer, per process)
    http_max_connections: int = Field(default=200, ge=1)

    # request limits
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_payload_bytes: int = Field(default=64 * 1024, ge=1)

    # batch scoring off the event loop
    classify_threads: int = Field(default=2, ge=1, le=64)

    # the learning loop (docs/learning-loop.md): exploration sends this share of the uncertain or
    # unfamiliar "final" first failures async to learn their outcome (never one with p < the floor).
    # Off by default: with it on, some failures the model calls final answer ASYNC_PROCESSING, which a
    # platform must opt into (0.02 is the recommended production value).
    exploration_rate: float = Field(default=0.0, ge=0, le=1)
    exploration_min_probability: float = Field(default=0.05, ge=0, le=1)
    exploration_floor_probability: float = Field(default=0.01, ge=0, le=1)
    # hot reload: poll <model_dir>/ACTIVE every this many seconds (0: only POST /admin/model/reload)
    model_watch_s: float = Field(default=5.0, ge=0)
    # shadow scoring: a registry version or an artifact folder scored alongside the serving model
    shadow_model: str | None = None
    # drift: sliding window, minimum evidence, and the thresholds that raise an alert
    drift_window_s: float = Field(default=3600.0, gt=0)
    drift_min_failures: int = Field(default=30, ge=1)
    drift_unseen_ngram_cutoff: float = Field(default=0.5, ge=0, le=1)
    drift_max_unseen_message_share: float = Field(default=0.2, ge=0, le=1)
    drift_max_unseen_code_share: float = Field(default=0.2, ge=0, le=1)
    drift_max_async_rate_delta: float = Field(default=0.25, ge=0, le=1)
    drift_max_calibration_error: float = Field(default=0.15, ge=0, le=1)
    drift_min_outcomes: int = Field(default=50, ge=1)
    drift_calibration_window_s: float = Field(default=7 * 86_400.0, gt=0)
    drift_calibration_refresh_s: float = Field(default=300.0, gt=0)

    log_level: str = "INFO"

    # shared insurer state (docs/architecture.md, "Shared insurer state"): every serve and worker process
    # adds its insurer counts to the order database and reads the fleet's back every `shared_sync_s`; the
    # adaptive throttle decides on the fleet's figure, and falls back to the process's own after
    # `shared_stale_s` without a sync. The retry budget of an insurer is one token bucket for all workers,
    # refilled at max(retry_rate_per_s, retry_budget_share x the insurer's first calls per second).
    # shared_state = False: every process keeps its own figures and budget (the behaviour before issue 12).
    shared_state: bool = True
    shared_sync_s: float = Field(default=0.5, gt=0, le=10)
    shared_stale_s: float = Field(default=5.0, gt=0)
    retry_budget_share: float = Field(default=0.1, ge=0, le=10)
    # order events (docs/contract.md §8): with both a URL and a secret (whsec_<base64 key>) set, `serve`
    # and `worker` POST every event there, signed (Standard Webhooks), retried with backoff and jitter
    # up to `webhook_max_age_s` after the event, then marked failed. Per process: `webhook_concurrency`
    # requests at a time, each within `webhook_timeout_s`; a claimed event is leased for `webhook_lease_s`.
    webhook_url: str = ""
    webhook_secret: str = Field(default="", repr=False)
    webhook_max_age_s: float = Field(default=86_400.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)
    webhook_concurrency: int = Field(default=16, ge=1, le=1_000)
    webhook_batch: int = Field(default=100, ge=1, le=1_000)
    webhook_lease_s: float = Field(default=60.0, gt=0)
    webhook_retry_base_s: float = Field(default=1.0, gt=0)
    webhook_retry_max_s: float = Field(default=600.0, gt=0)
    webhook_poll_s: float = Field(default=0.5, gt=0, le=60)

    @model_validator(mode="after")
    def _retry_cap(self) -> Settings:
        if self.retry_max_s < self.retry_base_s:
            raise ValueError(f"retry_max_s ({self.retry_max_s}) must be >= retry_base_s ({self.retry_base_s})")
        if self.breaker_failures > self.breaker_window:
            raise ValueError(
                f"breaker_failures ({self.breaker_failures}) must be <= breaker_window ({self.breaker_window})"
            )
        return self

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.state_dir / 'asyncgate.db'}"

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.state_dir / "models"

    @property
    def resolved_insurers_file(self) -> Path | None:
        if self.insurers_file is not None:
            return self.insurers_file
        default = Path("insurers.toml")
        return default if default.exists() else None
