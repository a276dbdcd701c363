"""Synthetic failures: the vocabulary (package data under `vocab/`) and its renderer.

Used only by the history generator (training/generate.py) and the insurer simulator
(service/simulator/): serving never loads it, so model/ holds exactly what serving needs. A test
(tests/test_layout.py) keeps it that way.

    vocabulary.py  load_vocabulary() checks vocab/*.toml; render_failure() words one failed call
    body.py        a partner's error code, body wrapping, HTTP status and latency
    values.py      placeholder values (order ids, policy numbers, ID numbers with check digits, ...)
"""
