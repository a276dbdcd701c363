"""bench.report and bench.common: goals judged right, and docs/benchmarks.md shared with other scripts."""

from bench.common import Goal, Section, ratio_goal
from bench.report import BEGIN, END, merge, render

OTHER = "<!-- load_process:begin (x) -->\nsteady /process rate table\n<!-- load_process:end -->"


def _section(name: str = "1-classify") -> Section:
    return Section(
        name=name,
        title="1. /classify",
        command="python -m bench.http_classify",
        columns=["server", "req/s"],
        rows=[["bare", 5000.0], ["asyncgate", 3100.0]],
        goals=[Goal("/classify ≥ 60% of bare", "62%", True)],
        started="2026-11-25 18:00 UTC",
        seconds=40.0,
    )


def test_goals_say_met_or_by_how_much_they_are_missed():
    assert ratio_goal("ratio", 0.62, 0.60, percent=True) == Goal("ratio", "62%", True)
    missed = ratio_goal("rate", 12_500.0, 50_000.0)
    assert not missed.met and missed.shortfall == "short by 75% of 50,000"
    over = ratio_goal("cold start", 3.9, 3.0, higher_is_better=False, unit=" s")
    assert not over.met and over.shortfall == "1.30x the limit of 3.00 s"
    assert ratio_goal("memory", 0.33, 1.2, higher_is_better=False, unit="x").met


def test_render_lists_figures_goals_and_what_was_not_run():
    block = render([_section()])
    assert block.startswith(BEGIN) and block.endswith(END)
    assert "| asyncgate | 3,100 |" in block
    assert "| /classify ≥ 60% of bare | 62% | met |" in block
    assert "`python -m bench.training`" in block  # not run: named, not silently left out


def test_merge_replaces_only_our_block():
    page = merge(None, f"{BEGIN}\nold\n{END}")
    page = merge(page + "\n" + OTHER + "\n", f"{BEGIN}\nnew\n{END}")
    assert page.startswith("# Benchmarks\n")
    assert "new" in page and "old" not in page
    assert OTHER in page


def test_merge_adds_our_block_after_the_title_of_a_page_written_by_another_script():
    page = merge(f"# Benchmarks\n\n{OTHER}\n", f"{BEGIN}\nours\n{END}")
    assert page.index("ours") < page.index("steady /process rate table")
    assert page.count(OTHER) == 1
