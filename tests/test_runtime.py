"""The runtime without PyTorch: an export bundle transcribes, decodes and aligns, with every search
(greedy, beam, lexicon, LM, attention rescoring), in a Python where ``import torch`` fails, and gives
what the checkpoint gives with torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli, torch_blocked_env

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python finds a ``torch`` package that refuses to import."""
    return torch_blocked_env(tmp_path_factory.mktemp("no_torch"))


def without_torch(env: dict[str, str], args: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asrkit", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_blocked_environment_really_has_no_torch(no_torch):
    found = subprocess.run([sys.executable, "-c", "import torch"], env=no_torch, capture_output=True, text=True)
    assert found.returncode != 0 and "torch is blocked" in found.stderr
    # what needs torch says so in one line: exporting and training are not part of the runtime
    checkpoint = ROOT / "tests" / "data" / "checkpoint_v1.pt"
    for args in (["export", checkpoint, "--out", "y"], ["transcribe", checkpoint, "a.wav"]):
        refused = without_torch(no_torch, args)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
            "error: this command needs PyTorch, which this install lacks (one without it runs export bundles: "
            "transcribe, decode and align a bundle folder); pip install torch"], refused.stderr


@pytest.fixture(scope="module")
def joint_bundle(joint_exp, tmp_path_factory) -> Path:
    from asrkit.recognize.export import export_bundle

    return export_bundle(joint_exp, tmp_path_factory.mktemp("runtime") / "joint")


def test_a_bundle_transcribes_with_every_search_and_no_torch(joint_exp, joint_bundle, tone_corpus, tmp_path, capsys,
                                                             no_torch):
    lm = tmp_path / "lm.arpa"
    assert run_cli(["-q", "lm", "build", tone_corpus["train"], "--out", lm, "--order", "2"], capsys)[0] == 0
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("a\nb\n")
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:3]
    searches = [["--mode", "greedy"], ["--mode", "beam", "--beam", "4"],
                ["--mode", "beam", "--beam", "4", "--lm", lm, "--lm-weight", "0.8"],
                ["--mode", "beam", "--beam", "4", "--lexicon", lexicon],
                ["--mode", "rescore", "--beam", "4", "--lm", lm]]
    for search in searches:
        for fmt in ("json", "srt"):
            code, want, err = run_cli(["transcribe", joint_exp, *wavs, "--format", fmt, *search], capsys)
            assert code == 0, err
            got = without_torch(no_torch, ["transcribe", joint_bundle, *wavs, "--format", fmt, *search])
            assert got.returncode == 0, got.stderr
            assert got.stdout == want, (search, fmt)


def test_a_bundle_decodes_and_aligns_a_data_dir_with_no_torch(joint_exp, joint_bundle, tone_corpus, tmp_path, capsys,
                                                              no_torch):
    args = ["--mode", "rescore", "--beam", "4", "--nbest", "2"]
    assert run_cli(["-q", "decode", joint_exp, tone_corpus["dev"], "--out", tmp_path / "torch", *args], capsys)[0] == 0
    got = without_torch(no_torch, ["-q", "decode", joint_bundle, tone_corpus["dev"], "--out", tmp_path / "ort", *args])
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "ort" / "hyp").read_text() == (tmp_path / "torch" / "hyp").read_text()
    texts = [[line.split(" ", 3)[::3] for line in (tmp_path / d / "nbest").read_text().splitlines()]
             for d in ("torch", "ort")]
    assert texts[0] == texts[1]
    assert run_cli(["-q", "align", joint_exp, tone_corpus["dev"], "--out", tmp_path / "torch.ctm"], capsys)[0] == 0
    got = without_torch(no_torch, ["-q", "align", joint_bundle, tone_corpus["dev"], "--out", tmp_path / "ort.ctm"])
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "ort.ctm").read_text() == (tmp_path / "torch.ctm").read_text()


def test_no_module_on_the_runtime_path_imports_torch():
    """The modules a bundle's recognizer reaches (every asrkit import, inside functions too, except
    the torch backend a checkpoint loads) have no ``import torch`` anywhere: a static view of what
    the tests above run."""
    import ast

    from test_layers import graph, module_names

    edges, paths = graph(), module_names()
    reached, todo = set(), ["asrkit.recognize.recognizer", "asrkit.recognize.bundle", "asrkit.search.lm",
                            "asrkit.recognize.stream"]
    while todo:
        name = todo.pop()
        if name in reached or name == "asrkit.recognize.torch_backend":
            continue
        reached.add(name)
        todo.extend(edges.get(name, ()))
        parts = name.split(".")  # importing a module runs its packages' __init__ files: their top level
        todo.extend(f"asrkit.{'.'.join(parts[1:k])}#init" for k in range(2, len(parts)) if parts[1:k])
    assert {"asrkit.search.prefix", "asrkit.data.features", "asrkit.recognize.align",
            "asrkit.model.stream_plan", "asrkit.model#init"} <= reached
    using_torch = []
    for name in sorted(reached):
        package = name.endswith("#init")
        tree = ast.parse(paths[name.removesuffix("#init")].read_text(encoding="utf-8"))
        nodes = tree.body if package else ast.walk(tree)  # a package's __init__: what it runs when imported
        for node in nodes:
            found = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(f.split(".")[0] == "torch" or (package and f.startswith("asrkit")) for f in found):
                using_torch.append(name)
    assert not using_torch, using_torch


def test_a_missing_optional_package_is_one_line_naming_the_extra(trained_exp, tmp_path, capsys, monkeypatch):
    """Exporting without the onnx package (the 'export' extra): one line saying what to install."""
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # what an install without it raises on import
    code, _, err = run_cli(["export", trained_exp, "--out", tmp_path / "b"], capsys)
    assert code == 1 and err.strip().splitlines() == ["error: this command needs the onnx package: pip install "
                                                      "'asrkit[export]'"]
    assert not (tmp_path / "b").exists()
