"""A realistic insurer speaking the contract's protocol (docs/contract.md §3) and signed-form, for demos and tests.

ledger.py     completed orders and call counts, optionally persisted (atomic writes)
behaviour.py  scripted steps (payload["sim"]) and seeded scenarios -> what to answer
app.py        the FastAPI app (create_simulator_app) and serve_simulator (uvicorn)
signed.py     the signed-form side (/signed/...): the same insurer, signed form answers
"""

from service.simulator.app import create_simulator_app, serve_simulator
from service.simulator.behaviour import SCENARIOS, STEPS, ScriptError, SimulatorConfigError
from service.simulator.ledger import Ledger, LedgerFileError

__all__ = [
    "SCENARIOS",
    "STEPS",
    "Ledger",
    "LedgerFileError",
    "ScriptError",
    "SimulatorConfigError",
    "create_simulator_app",
    "serve_simulator",
]
