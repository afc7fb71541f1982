"""``asrkit tokenizer ...``: train and inspect sentencepiece units (``tokenizer.type: sentencepiece``)."""

from __future__ import annotations

from pathlib import Path

import typer

from asrkit.cli.app import app

tokenizer_app = typer.Typer(help="Subword units: train a sentencepiece model on training text, or show how a "
                            "tokenizer splits a text.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def train(
    text: Path = typer.Argument(..., help="Training text only: a data dir, a Kaldi 'text' file, or plain text (--no-ids)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for tokenizer.model and tokens.txt (give it to "
                             "training as tokenizer.model=FOLDER)."),
    vocab_size: int = typer.Option(500, help="Pieces, <blank> and <unk> included."),
    model_type: str = typer.Option("bpe", help="bpe or unigram."),
    ids: bool = typer.Option(True, "--ids/--no-ids", help="Lines start with an utterance id (Kaldi 'text')."),
) -> None:
    """Train a sentencepiece model (BPE or unigram) with <blank> at 0 and <unk> at 1."""
    from asrkit.search.lm import read_sentences
    from asrkit.tokenizer import train_sentencepiece

    sentences = read_sentences(text, with_ids=ids)
    tokenizer = train_sentencepiece([" ".join(s) for s in sentences], out, vocab_size, model_type)
    typer.echo(f"{out / 'tokenizer.model'}: sentencepiece {model_type}, {len(tokenizer)} pieces from "
               f"{len(sentences)} sentences")


@tokenizer_app.command("encode")
def encode(
    source: Path = typer.Argument(..., help="An exp dir, a checkpoint, or a folder 'tokenizer train' wrote."),
    text: str = typer.Argument(..., help="The text to split."),
) -> None:
    """Print the tokens of a text, one word per line (how the model spells it)."""
    from asrkit.tokenizer import load_tokenizer

    if source.is_file():
        from asrkit.checkpoint import load_checkpoint
        from asrkit.tokenizer import from_checkpoint

        tokenizer = from_checkpoint(load_checkpoint(source))
    else:
        tokenizer = load_tokenizer(source)
    ids = tokenizer.encode(text)
    for positions in tokenizer.split_words(ids):
        typer.echo(" ".join(tokenizer.display(ids[p]) for p in positions))
