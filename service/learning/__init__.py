"""The learning loop: what the service learns from its own orders, and how a new model comes to serve.

    watch.py     FailureWatch: each order's first failure to drift, shadow scoring, exploration
    drift.py     DriftMonitor: unseen codes and messages, async-rate shift, live calibration
    shadow.py    ShadowScorer: a candidate model scoring alongside the serving one
    outcomes.py  outcome labels (what re-execution showed) and their masked export
    report.py    live decisions and outcomes per model version (`asyncgate models report`)
    reload.py    ModelReloader: hot reload (POST /admin/model/reload, the ACTIVE watch), load_checked
    loop.py      Learning / open_learning: the parts above in a running process

docs/learning-loop.md describes the loop; nothing here is imported by model/ or training/.
"""
