"""The `asyncgate` command line (docs/contract.md §1): the one place that composes training and service.

Every command builds its Settings once from flags and ASYNCGATE_* variables and hands them on.
Training modules are imported inside the commands that need them, so `serve` and `worker` start
without loading training code (and service/ never imports training/ elsewhere).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from service.config import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="asyncgate: classify failed insurer calls and re-execute the async-eligible ones.",
)
models_app = typer.Typer(no_args_is_help=True, help="The model registry: list, activate, rollback.")
app.add_typer(models_app, name="models")
rules_app = typer.Typer(
    no_args_is_help=True, help="Operators' rules: pin the decision on failures the model gets wrong (no retraining)."
)
app.add_typer(rules_app, name="rules")

ModelDirOpt = Annotated[Path | None, typer.Option("--model-dir", help="model registry or artifact folder")]


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def ensure_default_model(settings: Settings) -> None:
    """Train the default model from generated data when the registry has no usable artifact."""
    from model.registry import is_artifact_dir, resolve_artifact

    model_dir = settings.resolved_model_dir
    try:
        resolve_artifact(model_dir)
        return
    except Exception:
        if is_artifact_dir(model_dir):
            raise
    from training.generate import generate_failures, write_failures_csv
    from training.train import train_artifact

    data = settings.state_dir / "data" / f"default-{settings.default_train_rows}-{settings.default_train_seed}.csv"
    if not data.exists():
        typer.echo(f"generating the default training set ({settings.default_train_rows} rows) → {data}")
        data.parent.mkdir(parents=True, exist_ok=True)
        write_failures_csv(generate_failures(settings.default_train_rows, settings.default_train_seed), data)
    typer.echo(f"training the default model → {model_dir}")
    run = train_artifact([data], model_dir, make_active=True)
    typer.echo(f"model {run.version} ready in {run.seconds:.1f}s")


DbUrlOpt = Annotated[str | None, typer.Option("--db-url", help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB")]
InsurersOpt = Annotated[Path | None, typer.Option("--insurers", help="insurers TOML file")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    db_url: DbUrlOpt = None,
    model_dir: ModelDirOpt = None,
    insurers: InsurersOpt = None,
    workers: Annotated[int | None, typer.Option(help="server processes (default 1)")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="serve a non-loopback address without API keys (not recommended)")
    ] = False,
) -> None:
    """Run the HTTP service (uvicorn). Trains the default model first when none exists."""
    import uvicorn

    from service.api.auth import ApiKeys, ApiKeysError, is_loopback
    from service.logs import configure_logging

    settings = _settings(
        host=host, port=port, db_url=db_url, model_dir=model_dir, insurers_file=insurers, workers=workers
    )
    try:
        if settings.api_keys:
            ApiKeys.parse(settings.api_keys)  # a bad key list fails here, before the model is trained
    except ApiKeysError as exc:
        raise _fail(str(exc)) from exc
    if not settings.api_keys and not is_loopback(settings.host) and not insecure:
        raise _fail(
            f"refusing to serve on {settings.host} without API keys: set ASYNCGATE_API_KEYS "
            "(see README, Security) or pass --insecure"
        )
    ensure_default_model(settings)
    configure_logging(settings.log_level)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 30,
    }
    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    import os

    for key, value in settings.model_dump(exclude_unset=False).items():
        if value is not None:
            os.environ[f"ASYNCGATE_{key.upper()}"] = str(value)
    uvicorn.run("service.asgi:app", factory=True, workers=settings.workers, **common)


@app.command()
def worker(
    db_url: DbUrlOpt = None,
    insurers: InsurersOpt = None,
    model_dir: ModelDirOpt = None,
    concurrency: Annotated[int | None, typer.Option(help="orders re-executed at once")] = None,
    once: Annotated[bool, typer.Option("--once", help="process every order due now, then exit 0")] = False,
) -> None:
    """Run the re-execution worker."""
    import anyio

    from service.logs import configure_logging

    settings = _settings(db_url=db_url, insurers_file=insurers, model_dir=model_dir, worker_concurrency=concurrency)
    ensure_default_model(settings)
    configure_logging(settings.log_level)
    stats = anyio.run(_run_worker, settings, once)
    typer.echo(
        json.dumps(
            {
                "claimed": stats.claimed,
                "finished": stats.finished,
                "released": stats.released,
                "deferred": stats.deferred,
                "errors": stats.errors,
                "by_state": stats.by_state,
            }
        )
    )


async def _run_worker(settings: Settings, once: bool) -> Any:
    import signal

    import anyio

    from service.runtime import open_runtime
    from service.worker import Worker

    stop = anyio.Event()

    async def watch_signals(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                stop.set()

    async with open_runtime(settings, role="worker") as runtime, anyio.create_task_group() as group:
        group.start_soon(watch_signals, group.cancel_scope)
        runner = Worker(
            runtime.processor,
            runtime.store,
            health=runtime.health,
            metrics=runtime.metrics,
            batch=settings.worker_batch,
            concurrency=settings.worker_concurrency,
            lease_s=settings.lease_s,
            poll_s=settings.worker_poll_s,
            budget=runtime.budget,
        )
        stats = await runner.run(once=once, stop=stop)
        group.cancel_scope.cancel()
    return stats


@app.command("generate-data")
def generate_data(
    rows: Annotated[int, typer.Option(min=1, help="number of failures")],
    seed: Annotated[int, typer.Option(help="random seed (same seed, same file)")],
    out: Annotated[Path, typer.Option(help="CSV to write")],
) -> None:
    """Write synthetic historical failures (docs/contract.md §5)."""
    from training.generate import generate_failures, write_failures_csv

    frame = generate_failures(rows, seed)
    write_failures_csv(frame, out)
    typer.echo(f"wrote {len(frame)} rows ({frame['async_eligible'].mean():.1%} async-eligible) to {out}")


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", help="CSV of historical failures; repeat for several")],
    out: Annotated[Path | None, typer.Option(help="model registry folder (default: the state folder's)")] = None,
    make_active: Annotated[bool, typer.Option("--activate", help="make the new version active")] = False,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="skip the held-out evaluation")] = False,
) -> None:
    """Train a model and add it as a new version to the registry."""
    from training.train import train_artifact
    from training.validate import DataError

    registry = out if out is not None else _settings().resolved_model_dir
    try:
        run = train_artifact(data, registry, make_active=make_active, holdout_metrics=not no_eval)
    except DataError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"version {run.version} → {run.artifact} ({'active' if run.activated else 'not active'}, {run.seconds:.1f}s)"
    )
    holdout = run.metrics.get("holdout_random_20pct")
    if holdout:
        from training.evaluate import summary_table

        typer.echo(summary_table({"holdout": holdout}))


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="model registry or artifact folder")],
    data: Annotated[Path, typer.Option(help="labelled CSV (docs/contract.md §5)")],
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics as JSON here")] = None,
) -> None:
    """Score a labelled CSV with a trained model; print (and optionally write) the metrics."""
    from model.artifact import ArtifactError, load_artifact
    from model.registry import resolve_artifact
    from training.evaluate import evaluate_model, summary_table
    from training.validate import DataError, load_failures

    try:
        loaded = load_artifact(resolve_artifact(model_dir))
        frame = load_failures([data], need_both_classes=False)
    except (ArtifactError, DataError) as exc:
        raise _fail(str(exc)) from exc
    metrics = evaluate_model(loaded.classifier, frame)
    typer.echo(f"model {loaded.version} on {data} ({len(frame)} rows)")
    typer.echo(summary_table(metrics))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"model_version": loaded.version, **metrics}, indent=2) + "\n")


@app.command()
def gate(
    gate_file: Annotated[Path | None, typer.Option("--gate", help="thresholds (default: training/gate.toml)")] = None,
    out: Annotated[Path, typer.Option(help="report folder")] = Path("reports/gate"),
    rows: Annotated[int | None, typer.Option(help="override the gate's row count")] = None,
) -> None:
    """Train on the default generated data, evaluate all splits, fail below the gate."""
    from training.evaluate import summary_table
    from training.gate import DEFAULT_GATE_FILE, run_gate

    result = run_gate(gate_file or DEFAULT_GATE_FILE, out, rows=rows)
    typer.echo(summary_table({r.name: r.metrics for r in result.results}))
    typer.echo(f"report: {result.report}")
    if not result.passed:
        for violation in result.violations:
            typer.secho(f"GATE FAILED: {violation}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo("gate passed")


@models_app.command("list")
def models_list(model_dir: ModelDirOpt = None) -> None:
    """List the registry's versions (* marks the active one)."""
    from model.registry import list_versions

    registry = model_dir or _settings().resolved_model_dir
    versions = list_versions(registry)
    if not versions:
        typer.echo(f"no versions in {registry}")
    for v in versions:
        holdout = v.card.get("metrics", {}).get("holdout_random_20pct", {}).get("model", {})
        f1 = holdout.get("async", {}).get("f1")
        cost = holdout.get("cost_per_row")
        rows = v.card.get("training_data", {}).get("rows")
        typer.echo(
            f"{'*' if v.active else ' '} {v.version}  rows={rows}  async_f1={f1 if f1 is None else round(f1, 4)}"
            f"  cost_per_row={cost if cost is None else round(cost, 4)}"
        )


@models_app.command("activate")
def models_activate(version: str, model_dir: ModelDirOpt = None) -> None:
    """Make VERSION the active model (the previous one is kept for rollback)."""
    from model.artifact import ArtifactError, load_artifact
    from model.registry import RegistryError, activate

    registry = model_dir or _settings().resolved_model_dir
    try:
        load_artifact(registry / version)  # refuse to activate what would not load
        activate(registry, version)
    except (ArtifactError, RegistryError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"active: {version}")


@models_app.command("rollback")
def models_rollback(model_dir: ModelDirOpt = None) -> None:
    """Re-activate the previously active version."""
    from model.registry import RegistryError, rollback

    registry = model_dir or _settings().resolved_model_dir
    try:
        version = rollback(registry)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"active: {version}")


@contextmanager
def _open_store(settings: Settings) -> Iterator[Any]:
    from service.store import OrderStore, create_db_engine, migrate

    engine = create_db_engine(settings.resolved_db_url)
    try:
        migrate(engine)
        yield OrderStore(engine)
    finally:
        engine.dispose()


def _since(text: str | None) -> Any:
    import datetime as dt

    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise _fail(f"--since {text!r} is not an ISO-8601 time (e.g. 2026-11-24 or 2026-11-24T10:00:00Z)") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


SinceOpt = Annotated[str | None, typer.Option("--since", help="only first failures at or after this ISO-8601 time")]


@app.command("export-outcomes")
def export_outcomes(
    out: Annotated[Path, typer.Option(help="CSV to write (docs/contract.md §5, plus provenance columns)")],
    db_url: DbUrlOpt = None,
    since: SinceOpt = None,
) -> None:
    """Write each order's first failure labelled by what re-execution showed (personal data masked)."""
    from service.learning.outcomes import export_outcomes as export
    from service.store import StoreUnavailable

    try:
        with _open_store(_settings(db_url=db_url)) as store:
            summary = export(store, out, since=_since(since))
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc
    typer.echo(summary.describe())


@models_app.command("report")
def models_report(
    db_url: DbUrlOpt = None,
    model_dir: ModelDirOpt = None,
    candidate: Annotated[
        list[str] | None, typer.Option("--candidate", help="registry version to re-score outcomes with (repeatable)")
    ] = None,
    since: SinceOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report as JSON here")] = None,
) -> None:
    """Live decisions and outcomes per model version; candidates (default: the active one) re-scored."""
    from model.artifact import ArtifactError
    from model.registry import active_version
    from service.learning.outcomes import iter_first_failures
    from service.learning.reload import load_checked
    from service.learning.report import model_report, render_report
    from service.store import StoreUnavailable

    settings = _settings(db_url=db_url, model_dir=model_dir)
    registry = settings.resolved_model_dir
    names = candidate or [v for v in [active_version(registry)] if v]
    try:
        candidates = {name: load_checked(registry / name) for name in names}
        with _open_store(settings) as store:
            rows = list(iter_first_failures(store, since=_since(since)))
            _, rules = store.rules.live_rules()
    except (ArtifactError, StoreUnavailable) as exc:
        raise _fail(str(exc)) from exc
    report = model_report(rows, candidates, rules)
    typer.echo(render_report(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


#: Who changes rules from the command line (the rules' history records it).
CLI_ACTOR = "cli"


def _rule_problems(exc: Any) -> str:
    """A pydantic ValidationError of a RuleDraft as `field: message` lines."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'rule'}: {e['msg']}" for e in exc.errors())


def _describe_rule(rule: Any) -> str:
    match = ", ".join(
        f"{name}={getattr(rule, name)!r}"
        for name in ("insurer", "operation", "error_code", "message_contains")
        if getattr(rule, name) is not None
    )
    category = f" ({rule.category})" if rule.category else ""
    return f"#{rule.rule_id} {rule.decision}{category} when {match}: {rule.reason}"


@rules_app.command("list")
def rules_list(
    db_url: DbUrlOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help='print {"rules": [...]} as GET /admin/rules does')] = False,
) -> None:
    """The live rules, oldest first, with their hits."""
    from service.api.rules import rule_out
    from service.store import StoreUnavailable

    try:
        with _open_store(_settings(db_url=db_url)) as store:
            _, live = store.rules.live_rules()
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps({"rules": [rule_out(r).model_dump(mode="json") for r in live]}, ensure_ascii=False))
        return
    if not live:
        typer.echo("no rules")
    for rule in live:
        when = rule.created_at.isoformat(timespec="seconds")
        typer.echo(f"{_describe_rule(rule)}  [hits {rule.hits}; by {rule.created_by} at {when}]")


@rules_app.command("add")
def rules_add(
    decision: Annotated[str, typer.Option(help="async or final")],
    reason: Annotated[str, typer.Option(help="why (kept with the rule and shown with every decision it makes)")],
    insurer: Annotated[str | None, typer.Option(help="match this insurer exactly (default: any)")] = None,
    operation: Annotated[str | None, typer.Option(help="match this operation exactly (default: any)")] = None,
    error_code: Annotated[str | None, typer.Option("--error-code", help="match this error code exactly")] = None,
    message_contains: Annotated[
        str | None, typer.Option("--message-contains", help="match messages containing this (NFKC, any case)")
    ] = None,
    category: Annotated[str | None, typer.Option(help="the category to report (on the decision's side)")] = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Add a rule; every service and worker process applies it within 5 seconds."""
    import datetime as dt

    from pydantic import ValidationError

    from service.rules import RuleDraft
    from service.store import StoreUnavailable

    fields = {
        "insurer": insurer,
        "operation": operation,
        "error_code": error_code,
        "message_contains": message_contains,
        "decision": decision,
        "category": category,
        "reason": reason,
    }
    try:
        draft = RuleDraft.model_validate(fields)
    except ValidationError as exc:
        raise _fail(_rule_problems(exc)) from exc
    try:
        with _open_store(_settings(db_url=db_url)) as store:
            rule = store.rules.add_rule(draft.new_rule(), actor=CLI_ACTOR, now=dt.datetime.now(dt.UTC))
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"added {_describe_rule(rule)}")


@rules_app.command("remove")
def rules_remove(rule_id: Annotated[int, typer.Argument(help="the rule's id")], db_url: DbUrlOpt = None) -> None:
    """Remove a rule (it stops applying within 5 seconds and stays in the history)."""
    import datetime as dt

    from service.store import RuleNotFound, StoreUnavailable

    try:
        with _open_store(_settings(db_url=db_url)) as store:
            rule = store.rules.delete_rule(rule_id, actor=CLI_ACTOR, now=dt.datetime.now(dt.UTC))
    except RuleNotFound as exc:
        raise _fail(str(exc), code=1) from exc
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"removed {_describe_rule(rule)}")


@rules_app.command("import")
def rules_import(
    file: Annotated[Path, typer.Argument(help="a .toml or .csv file as `rules export` writes")],
    db_url: DbUrlOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="also remove live rules that the file lacks")] = False,
) -> None:
    """Add the file's rules that are not live yet: every row is checked first, then all are written or none."""
    import datetime as dt

    from service.rule_files import RuleFileError, read_rules_file
    from service.store import StoreUnavailable

    try:
        drafts = read_rules_file(file)
    except RuleFileError as exc:
        raise _fail(str(exc)) from exc
    try:
        with _open_store(_settings(db_url=db_url)) as store:
            added, kept, removed = store.rules.import_rules(
                [d.new_rule() for d in drafts], actor=CLI_ACTOR, now=dt.datetime.now(dt.UTC), replace=replace
            )
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc
    for rule in added:
        typer.echo(f"added {_describe_rule(rule)}")
    for rule in removed:
        typer.echo(f"removed {_describe_rule(rule)}")
    typer.echo(f"{len(added)} added, {len(kept)} already live, {len(removed)} removed")


@rules_app.command("export")
def rules_export(
    fmt: Annotated[str, typer.Option("--format", help="toml or csv")] = "toml",
    out: Annotated[Path | None, typer.Option("--out", help="write here (default: standard output)")] = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Write the live rules for review (no ids, times or hits: the same rules give the same file)."""
    from service.rule_files import FORMATS, render
    from service.store import StoreUnavailable

    if fmt not in FORMATS:
        raise _fail(f"--format {fmt!r}: use toml or csv")
    try:
        with _open_store(_settings(db_url=db_url)) as store:
            _, live = store.rules.live_rules()
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from exc
    text = render(live, "toml" if fmt == "toml" else "csv")
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8", newline="")
    typer.echo(f"wrote {len(live)} rules to {out}", err=True)


@app.command("simulate-insurer")
def simulate_insurer(
    port: Annotated[int, typer.Option(help="port to listen on")],
    scenario: Annotated[str, typer.Option(help="normal, flaky, slow, outage, throttle, fast, new-codes")] = "normal",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    style: Annotated[str | None, typer.Option(help="partner style from synth/vocab to word failures")] = None,
    state_file: Annotated[Path | None, typer.Option(help="persist the ledger here (survives restarts)")] = None,
) -> None:
    """Run a simulated insurer speaking the insurer protocol (docs/contract.md §3)."""
    from service.simulator import serve_simulator

    serve_simulator(host=host, port=port, scenario=scenario, seed=seed, style=style, state_file=state_file)


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=1, help="orders to send")] = 200,
    scenario: Annotated[str, typer.Option(help="simulator scenario")] = "flaky",
    model_dir: ModelDirOpt = None,
    timeout_s: Annotated[float, typer.Option(help="how long to wait for async orders to settle")] = 120.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 1,
) -> None:
    """The whole loop on one machine: simulator, service, worker, a stream of orders, a summary."""
    from service.demo import run_demo

    settings = _settings(model_dir=model_dir)
    ensure_default_model(settings)
    code = run_demo(
        orders=orders,
        scenario=scenario,
        model_dir=settings.resolved_model_dir.resolve(),
        timeout_s=timeout_s,
        seed=seed,
    )
    raise typer.Exit(code)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()
