"""HTTP load with wrk (Debian's package) on loopback: install when missing, run bounded, parse the result.

`run_wrk(url, path, bodies, connections, seconds)` POSTs the JSON `bodies` round-robin (or, with
`unique_field`, makes every request's body unique by rewriting one JSON field with a counter) for
`seconds` and returns requests/s and latency percentiles, read from a Lua `done` hook that prints
JSON, so nothing depends on wrk's human-readable output. Targets must be 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_LUA_TEMPLATE = """
local bodies = {BODIES}
local path = {PATH}
local unique = {UNIQUE}
local counter = 0
request = function()
  counter = counter + 1
  local body = bodies[(counter % #bodies) + 1]
  if unique then
    body = string.gsub(body, "@@UNIQUE@@", tostring(counter), 1)
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("WRKJSON " .. string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %f}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean) .. "\\n")
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and non-2xx/3xx responses
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages (apt-get, as root) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get", flush=True)
    subprocess.run(
        ["bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk"],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still not on PATH after apt-get install wrk")
    return found


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_script(path: str, bodies: list[str], *, unique: bool) -> str:
    table = "{" + ",\n".join(_lua_string(b) for b in bodies) + "}"
    return (
        _LUA_TEMPLATE.replace("{BODIES}", table)
        .replace("{PATH}", _lua_string(path))
        .replace("{UNIQUE}", "true" if unique else "false")
    )


def run_wrk(
    url: str,
    path: str,
    bodies: list[dict[str, Any]],
    *,
    connections: int,
    seconds: int,
    unique_field: str | None = None,
    timeout_s: int = 10,
) -> Load:
    """POST `bodies` to url+path with `connections` connections for `seconds` (one wrk thread)."""
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load goes to loopback only, not {host}")
    encoded = []
    for body in bodies:
        if unique_field is not None:
            body = {**body, unique_field: f"{body[unique_field]}@@UNIQUE@@"}
        encoded.append(json.dumps(body, ensure_ascii=False))
    wrk = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="utf-8", delete=False) as script:
        script.write(lua_script(path, encoded, unique=unique_field is not None))
    try:
        argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "-s", script.name, url]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=True, stdin=subprocess.DEVNULL
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(int(raw[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Load(
        requests=int(raw["requests"]),
        seconds=raw["duration_us"] / 1e6,
        errors=errors,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )
