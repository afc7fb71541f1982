"""``asrkit lm ...``: build and inspect word n-gram language models (ARPA)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer

from asrkit.cli.app import app

lm_app = typer.Typer(help="Word n-gram language models in ARPA format (for --lm in decode/transcribe).",
                     no_args_is_help=True)
app.add_typer(lm_app, name="lm")


@lm_app.command("build")
def build(
    text: Path = typer.Argument(..., help="Training text: a data dir, a Kaldi 'text' file, or plain text (--no-ids)."),
    out: Path = typer.Option(..., "--out", "-o", help="ARPA file to write, e.g. data/lang/lm_3gram.arpa "
                             "(gzipped when it ends in .gz)."),
    order: int = typer.Option(3, help="n-gram order."),
    ids: bool = typer.Option(True, "--ids/--no-ids", help="Lines start with an utterance id (Kaldi 'text')."),
) -> None:
    """Interpolated Kneser-Ney n-gram from training transcripts (no KenLM needed)."""
    from asrkit.search.lm import ArpaLM, build_arpa, read_sentences

    sentences = read_sentences(text, with_ids=ids)
    arpa = build_arpa(sentences, order)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "wb") as raw:
        if out.suffix == ".gz":
            import gzip

            with gzip.GzipFile(fileobj=raw, mode="wb", filename=out.stem) as handle:
                handle.write(arpa.encode("utf-8"))
        else:
            raw.write(arpa.encode("utf-8"))
    os.replace(tmp, out)
    lm = ArpaLM.load(out)
    words = sum(len(s) for s in sentences)
    typer.echo(f"{out}: {lm.order}-gram, {len(lm.words)} words, {lm.num_ngrams} n-grams from {len(sentences)} "
               f"sentences ({words} words), interpolated Kneser-Ney")


@lm_app.command("score")
def score(
    lm_path: Path = typer.Argument(..., help="ARPA file."),
    text: Path = typer.Argument(..., help="Data dir, Kaldi 'text' file, or plain text (--no-ids)."),
    ids: bool = typer.Option(True, "--ids/--no-ids", help="Lines start with an utterance id (Kaldi 'text')."),
) -> None:
    """Perplexity of a text under the LM (words + </s>; OOVs via <unk>)."""

    from asrkit.search.lm import ArpaLM, read_sentences

    lm = ArpaLM.load(lm_path)
    sentences = read_sentences(text, with_ids=ids)
    total = sum(lm.sentence_log10(s) for s in sentences)
    count = sum(len(s) + 1 for s in sentences)
    oovs = sum(1 for s in sentences for w in s if w not in lm.index)
    typer.echo(f"{text}: {len(sentences)} sentences, {count} tokens incl. </s>, {oovs} OOVs, "
               f"log10 prob {total:.2f}, perplexity {10 ** (-total / max(count, 1)):.2f}")
