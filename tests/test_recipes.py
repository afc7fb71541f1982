"""The recipes' shell scripts: help from any folder, bad options, and safe to edit while they run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in (ROOT / "recipes").iterdir() if (p / "run.sh").is_file())


def test_every_recipe_is_found():
    assert {"an4", "digits", "fsdd", "yesno"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("where", ["root", "recipe", "elsewhere"])
def test_help_works_from_any_folder(recipe, where, tmp_path):
    script = ROOT / "recipes" / recipe / "run.sh"
    cwd, path = {"root": (ROOT, f"recipes/{recipe}/run.sh"),
                 "recipe": (script.parent, "run.sh"),
                 "elsewhere": (tmp_path, str(script))}[where]
    done = subprocess.run(["bash", path, "--help"], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    first_comment = script.read_text().splitlines()[1].lstrip("# ")
    assert done.stdout.splitlines()[0] == first_comment
    assert "--stage" in done.stdout and done.stderr == ""


@pytest.mark.parametrize("recipe", RECIPES)
def test_unknown_option_is_one_line(recipe):
    done = subprocess.run(["bash", str(ROOT / "recipes" / recipe / "run.sh"), "--bogus"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == "unknown option --bogus (see --help)"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_is_read_whole_before_it_runs(recipe):
    """Bash reads a script as it executes it, so a recipe edited during a long stage used to run
    the edited bytes from the old offset. Each recipe's body is one { ... } block ending in exit,
    which bash parses completely before running any of it."""
    lines = (ROOT / "recipes" / recipe / "run.sh").read_text().rstrip("\n").splitlines()
    start = lines.index("set -euo pipefail")
    assert lines[start + 1].startswith("{")
    assert lines[-2:] == ["exit", "}"]
    check = subprocess.run(["bash", "-n", str(ROOT / "recipes" / recipe / "run.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_a_braced_script_survives_being_edited_mid_run(tmp_path):
    """The mechanism itself: the first script is rewritten while it sleeps; the braced one still
    runs its original text to the end, the plain one runs the new bytes."""
    results = {}
    for name, (head, tail) in {"plain": ("", ""), "braced": ("{\n", "exit\n}\n")}.items():
        script = tmp_path / f"{name}.sh"
        out = tmp_path / f"{name}.out"
        script.write_text(f"set -eu\n{head}sleep 1\necho first >> {out}\necho second >> {out}\n{tail}")
        proc = subprocess.Popen(["bash", str(script)])
        subprocess.run(["sleep", "0.3"])
        # same length before the point bash has reached, different commands after it
        script.write_text(f"set -eu\n{head}sleep 1\necho FIRST >> {out}\necho SECOND >> {out}\n{tail}")
        proc.wait(timeout=10)
        results[name] = out.read_text().split()
    assert results["braced"] == ["first", "second"]
    assert results["plain"] == ["FIRST", "SECOND"]


def test_study_rows_named_wrongly_list_every_row_the_variants_included(tmp_path):
    """run_study.sh --rows: an unknown row is refused, naming the family and the encoder variants;
    'variants' expands to the variant rows (which then fail here only for want of data)."""
    script = ROOT / "recipes" / "an4" / "run_study.sh"
    done = subprocess.run(["bash", str(script), "--rows", "lstm_bi bogus"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "unknown row bogus" in done.stderr
    for row in ("jordan_uni", "elman_bi_noclip", "lstm_bi_pyr", "lstm_bi_proj", "lstm_bi_sub2", "gru_bi_proj"):
        assert row in done.stderr
    assert "== stage" not in done.stdout  # refused before the data stages or any row starts
