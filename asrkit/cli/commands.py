"""``asrkit prepare|features|train|decode|transcribe|eval``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from asrkit.cli.app import ALLOW_PIPES, app, fail
from asrkit.cli.search_options import search_options
from asrkit.config import RESUMABLE_KEYS, load_config
from asrkit.corpora import CORPORA
from asrkit.data.datadir import DataDir
from asrkit.errors import AsrkitError, CorpusError
from asrkit.search.options import SearchOptions

log = logging.getLogger("asrkit")


@app.command()
def prepare(
    corpus: str = typer.Argument(..., help=f"Corpus name: {', '.join(CORPORA)}."),
    out: Path = typer.Option(..., "--out", help="Output folder; one data dir per split (train/dev/test, or "
                             "LibriSpeech's subset names) goes under it."),
    corpus_dir: Optional[Path] = typer.Option(None, "--corpus-dir", help="A local copy in the official layout "
                                              "(else it is downloaded to --download-dir)."),
    download_dir: Path = typer.Option(Path("data/downloads"), help="Where downloads go."),
    subsets: Optional[str] = typer.Option(None, "--subsets", help="librispeech: comma-separated subsets, e.g. "
                                          "train-clean-100,dev-clean (default: every subset present)."),
    strict: bool = typer.Option(False, "--strict", help="librispeech: audio without a transcript line, or a line "
                                "without audio, is an error (else counted, reported and left out)."),
) -> None:
    """Turn a corpus in its official layout into Kaldi data dirs."""
    import inspect

    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r}; known: {', '.join(CORPORA)}")
    module = CORPORA[corpus]
    extra = {k: v for k, v in (("subsets", subsets), ("strict", strict)) if v}
    for key in extra:
        if key not in inspect.signature(module.prepare).parameters:
            raise CorpusError(f"--{key} is not an option of {corpus}")
    if corpus_dir is None and hasattr(module, "download"):
        takes_subsets = "subsets" in inspect.signature(module.download).parameters
        corpus_dir = module.download(download_dir, subsets) if takes_subsets else module.download(download_dir)
    elif corpus_dir is not None and not corpus_dir.is_dir():
        raise CorpusError(f"--corpus-dir {corpus_dir} is not a directory")
    counts = module.prepare(corpus_dir, out, **extra)
    typer.echo(f"{corpus}: " + ", ".join(f"{name} {n} utterances in {out / name}" for name, n in counts.items()))


@app.command()
def features(
    data_dir: Path = typer.Argument(..., help="Data dir; features go to DATA_DIR/feats.scp and feats.N.ark "
                                    "(Kaldi's layout), with utt2num_frames and asrkit's record feats.json."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (its 'feature' section is used)."),
    override: List[str] = typer.Option([], "--set", help="Override, e.g. feature.num_mel_bins=40 (repeatable)."),
    nj: int = typer.Option(1, "--nj", help="Worker processes (one thread each), each writing its own ark."),
    force: bool = typer.Option(False, help="Recompute every utterance (also to change the data dir's feature config)."),
    allow_pipes: bool = ALLOW_PIPES,
) -> None:
    """Compute the features of a data dir once (new or changed utterances only), for training and decoding."""
    from asrkit.data.featstore import compute_missing

    cfg = load_config(config, override).feature
    store = compute_missing(DataDir.load(data_dir), cfg, nj=nj, force=force, description=f"features ({data_dir.name})")
    kind = "foreign features (used as they are)" if store.external else f"{cfg.dim}-dim {cfg.kind}"
    frames = sum(store.num_frames(u) for u in store.entries)
    typer.echo(f"{data_dir / 'feats.scp'}: {len(store)} utterances, {frames} frames of {kind}")


@app.command()
def train(
    train_dir: Optional[Path] = typer.Option(None, "--train", help="Training data dir (on --resume: the run's own "
                                             "unless given)."),
    dev_dir: Optional[Path] = typer.Option(None, "--dev", help="Dev data dir (dev loss and greedy WER per epoch; on "
                                           "--resume: the run's own unless given)."),
    out: Path = typer.Option(..., "--out", help="Experiment dir, e.g. exp/bilstm."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (defaults when absent; on "
                                          "--resume, the run's own config.yaml)."),
    override: List[str] = typer.Option([], "--set", help="Override, e.g. model.hidden_size=320 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt, with its "
                                "config, train and dev data (asrkit train --out EXP --resume is the whole command). "
                                f"Only {', '.join(RESUMABLE_KEYS)} may differ from its config. More train.epochs "
                                "extend a run: the rate goes on from where it is and decays to the floor "
                                "(lr x final_lr_ratio) by the new end, so a finished run trains its added epochs "
                                "at the floor (for a new schedule, fine-tune with --init)."),
    accept_changes: bool = typer.Option(False, "--accept-changes", help="--resume with data that differ from the "
                                        "run's record, or another number of processes: the interrupted epoch "
                                        "restarts from its first batch with the new batch plan (else refused)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Fine-tune: start from this checkpoint's weights "
                                        "and CMVN with a fresh optimizer and schedule (same feature config; "
                                        "new characters get fresh output rows)."),
    allow_pipes: bool = ALLOW_PIPES,
) -> None:
    """Train a BiLSTM-CTC model; checkpoints best.pt and last.pt go to --out (Ctrl-C or SIGTERM save last.pt)."""
    from asrkit.training.expdir import resolve_config
    from asrkit.training.interrupt import Stopped
    from asrkit.training.trainer import train as run_training

    cfg = resolve_config(config, override, out, resume)
    try:
        state = run_training(train_dir, dev_dir, out, cfg, resume=resume, init=init, accept_changes=accept_changes)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: last.pt is saved
        saved = f"; {out / 'last.pt'} saved, continue with --resume" if (out / "last.pt").exists() else ""
        raise Stopped(exc, saved) from None
    best = (f"; best dev loss {state.best_dev_loss:.4f}, its dev WER {100 * state.best_dev_wer:.2f}%"
            if state.best_dev_loss != float("inf") else "")
    from asrkit.training.distributed import from_env

    if from_env().is_main:  # under torchrun, one summary line for the job, not one per process
        typer.echo(f"{out}: trained {state.epoch} epochs, {state.step} steps{best}")


@app.command()
def average(
    exp: Path = typer.Argument(..., help="Experiment dir with epoch_N.pt checkpoints."),
    num: int = typer.Option(5, "--num", "-n", help="How many epoch checkpoints to average."),
    by: str = typer.Option("dev_loss", help="dev_loss: the N with the lowest dev loss; dev_wer: the N with the lowest "
                            "dev WER (greedy, measured after each epoch); last: the last N."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default EXP/avg_N.pt)."),
) -> None:
    """Average the weights of N epoch checkpoints into one (decode it like any checkpoint)."""
    from asrkit.checkpoint import average_checkpoints, save_checkpoint, select_epochs

    paths = select_epochs(exp, num, by)
    out = out or exp / f"avg_{num}.pt"
    save_checkpoint(out, average_checkpoints(paths))
    typer.echo(f"{out}: average of {', '.join(p.stem for p in paths)}")


@app.command()
def export(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file, e.g. exp/NAME/avg_10.pt."),
    out: Path = typer.Option(..., "--out", help="The bundle folder to write (must not exist)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: dynamic int8 quantization of the "
                                           "matrix products (smaller and faster on the CPU)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset of the graph."),
) -> None:
    """Export a model as a bundle ONNX Runtime runs: encoder.onnx (features -> CTC log-probs), the tokenizer,
    CMVN, config and a manifest with every file's sha256. transcribe and decode take the bundle folder."""
    from asrkit.recognize.export import export_bundle

    bundle = export_bundle(exp, out, opset, quantize)
    typer.echo(f"{bundle}: encoder.onnx{' (int8)' if quantize else ''}, tokenizer, CMVN, config, manifest.json")


@app.command()
@search_options()
def decode(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file."),
    data_dir: Path = typer.Argument(..., help="Data dir to decode."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output dir (default EXP/decode_<set>_<mode>, "
                                       "or ..._<mode>_<stem> for a checkpoint file)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    allow_pipes: bool = ALLOW_PIPES,
    search: SearchOptions = None,
) -> None:
    """Decode a data dir; writes a Kaldi-style 'hyp' text file (and 'nbest' with --mode beam/rescore)."""
    from asrkit.recognize.recognizer import Recognizer, write_hyp, write_nbest

    recognizer = Recognizer(exp, device)
    recognizer.word_resources(search)  # a bad --lm/--lexicon fails before any audio is read
    hyps = recognizer.decode_data_dir(data_dir, search)
    # exp/NAME -> exp/NAME/decode_test_greedy; exp/NAME/avg_10.pt (or a bundle folder, which stays as
    # exported) -> exp/NAME/decode_test_greedy_avg_10
    inside = exp.is_dir() and not recognizer.is_bundle
    default = exp / f"decode_{data_dir.name}_{search.mode}" if inside else \
        exp.parent / f"decode_{data_dir.name}_{search.mode}_{exp.name if exp.is_dir() else exp.stem}"
    out = out or default
    write_hyp({u: recognizer.tokenizer.decode(h[0].tokens) for u, h in hyps.items()}, out / "hyp")
    if search.mode != "greedy":
        write_nbest(hyps, recognizer.tokenizer, out / "nbest")
    typer.echo(f"{out / 'hyp'}: {len(hyps)} utterances")


@app.command()
@search_options(nbest=False)
def transcribe(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file."),
    audio: List[Path] = typer.Argument(..., help="Audio files (wav, flac, sph, ogg; any rate, mono or stereo)."),
    output_format: str = typer.Option("txt", "--format", help="txt (text), json (words with start/end/confidence), "
                                      "srt (subtitles) or ctm (NIST word times); times by CTC forced alignment."),
    max_seconds: float = typer.Option(20.0, "--max-seconds", help="Files up to this length are decoded whole "
                                      "(as decode does); longer ones are cut at their pauses (and long "
                                      "stretches at their quietest moments) into segments of at most this length."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    stream: bool = typer.Option(False, "--stream", help="Stream each file through a unidirectional model chunk "
                                "by chunk, as a live source would come: partial results on one line (on a "
                                "terminal), each final result as offline transcribe prints it (the same text "
                                "without --endpoint)."),
    chunk_ms: float = typer.Option(320.0, "--chunk-ms", help="With --stream: the encoder's chunk, a whole number "
                                   "of the model's frames (e.g. 160, 320, 640 with 40 ms frames)."),
    endpoint: bool = typer.Option(False, "--endpoint", help="With --stream: end an utterance after 1.2 s of "
                                  "silence following speech or at 20 s, and drop 2.4 s of silence alone "
                                  "(k2/sherpa's endpoint rules); each utterance is a final result."),
    search: SearchOptions = None,
) -> int:
    """Print the transcript of each audio file (with its path when there are several), as each batch is
    decoded. A file that cannot be read gets its error line and the others are still transcribed;
    the exit code is then 1."""
    from asrkit.recognize.formats import FORMATS
    from asrkit.recognize.recognizer import Recognizer

    if output_format not in FORMATS:
        raise AsrkitError(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    recognizer = Recognizer(exp, device)
    recognizer.word_resources(search)  # a bad --lm/--lexicon fails before any audio is read
    if max_seconds <= 1.0:
        raise AsrkitError(f"--max-seconds must be more than 1, not {max_seconds}")
    if stream:
        return _transcribe_streams(recognizer, audio, search, output_format, chunk_ms, endpoint)
    if chunk_ms != 320.0 or endpoint:
        raise AsrkitError("--chunk-ms and --endpoint go with --stream")
    failed = 0
    for result in recognizer.transcripts(audio, search, with_words=output_format != "txt", max_seconds=max_seconds):
        if result.error is not None:  # said at once, and the other files are still transcribed
            fail(result.error)
            failed += 1
        else:
            _print_result(result.key, result.text, result.words, output_format, len(audio) > 1)
    if failed and len(audio) > 1:
        log.warning("%d of %d files could not be transcribed", failed, len(audio))
    return 1 if failed else 0


def _print_result(key: str, text: str, words, output_format: str, several: bool) -> None:
    from asrkit.recognize.formats import recording_key, to_ctm, to_json, to_srt

    if output_format == "txt":
        typer.echo(f"{key}\t{text}" if several else text)
    elif output_format == "json":
        typer.echo(to_json(key, text, words or []))
    elif output_format == "ctm":
        typer.echo(to_ctm(recording_key(key), words or []), nl=False)
    else:
        if several:
            typer.echo(f"# {key}")
        typer.echo(to_srt(words or []), nl=False)


def _transcribe_streams(recognizer, audio: list[Path], search, output_format: str, chunk_ms: float,
                        endpoint: bool) -> int:
    """``transcribe --stream``: each file fed to a ``StreamingSession`` one chunk at a time."""
    import sys

    from asrkit.data.audio import read_audio
    from asrkit.recognize.stream import EndpointRules, StreamingSession

    live = sys.stderr.isatty()
    failed = 0
    StreamingSession(recognizer, search, chunk_ms)  # a chunk size or model that cannot stream: said once, here
    for path in audio:
        try:
            samples, rate = read_audio(path)
            session = StreamingSession(recognizer, search, chunk_ms, EndpointRules() if endpoint else None,
                                       with_words=output_format != "txt", rate=rate)  # resampled as it comes
            piece = int(rate * chunk_ms / 1000)
            for start in range(0, len(samples) + piece, piece):
                results = session.accept(samples[start:start + piece]) if start < len(samples) else session.finish()
                _show(results, live, output_format, str(path), len(audio) > 1 or endpoint)
        except AsrkitError as exc:  # said at once, and the other files are still transcribed
            fail(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            failed += 1
    return 1 if failed else 0


@app.command()
@search_options(nbest=False)
def listen(
    exp: Path = typer.Argument(..., help="Experiment dir, checkpoint or export bundle of a unidirectional model."),
    device: Optional[str] = typer.Option(None, "--device", help="Input device, by name or number "
                                         "(python -m sounddevice lists them); default: the system's."),
    chunk_ms: float = typer.Option(320.0, "--chunk-ms", help="The encoder's chunk (a whole number of its frames)."),
    seconds: float = typer.Option(0.0, "--seconds", help="Stop after this much audio (0: at Ctrl-C)."),
    output_format: str = typer.Option("txt", "--format", help="txt, json, srt or ctm, as transcribe."),
    search: SearchOptions = None,
) -> int:
    """Transcribe the microphone as you speak: partial results on one line (on a terminal), each
    utterance's final result as transcribe prints it, cut at pauses (transcribe --stream --endpoint's
    rules). Needs sounddevice (pip install 'asrkit[listen]') and the PortAudio library."""
    import sys

    try:
        import sounddevice
    except OSError as exc:  # installed, but PortAudio is not
        raise AsrkitError(f"sounddevice cannot use PortAudio ({exc}); install the library, e.g. apt-get install "
                          "libportaudio2") from None

    from asrkit.recognize.recognizer import Recognizer
    from asrkit.recognize.stream import EndpointRules, StreamingSession

    recognizer = Recognizer(exp)
    session = StreamingSession(recognizer, search, chunk_ms, EndpointRules(), with_words=output_format != "txt")
    rate, live = recognizer.sample_rate, sys.stderr.isatty()
    block = int(rate * chunk_ms / 1000)
    chosen = int(device) if device is not None and device.isdigit() else device
    try:
        stream = sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32", device=chosen,
                                         blocksize=block)
    except Exception as exc:  # PortAudio's errors, a bad name or number: one line naming the device
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise AsrkitError(f"cannot open the microphone {device if device is not None else '(default)'} at "
                          f"{rate} Hz: {reason}") from None
    heard = 0
    try:
        with stream:
            while not seconds or heard < seconds * rate:
                samples, _ = stream.read(block)
                heard += len(samples)
                _show(session.accept(samples[:, 0]), live, output_format, "microphone", False)
    except KeyboardInterrupt:
        pass
    _show(session.finish(), live, output_format, "microphone", False)
    return 0


def _show(results, live: bool, output_format: str, key: str, several: bool) -> None:
    """A stream's results: partial ones on one rewritten line (a terminal only), final ones printed
    as transcribe prints them."""
    import sys

    for result in results:
        if live:
            sys.stderr.write("\r\033[K" + ("" if result.final else result.text[-200:]))
            sys.stderr.flush()
        if result.final:
            _print_result(key, result.text, result.words, output_format, several)


@app.command()
def align(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file."),
    data_dir: Path = typer.Argument(..., help="Data dir whose 'text' is aligned to its audio."),
    out: Optional[Path] = typer.Option(None, "--out", help="CTM file to write (default EXP/align_<set>/ctm)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    allow_pipes: bool = ALLOW_PIPES,
) -> None:
    """Word times of the reference transcripts by CTC forced alignment (Viterbi), as a CTM file."""
    from asrkit.errors import DecodeError
    from asrkit.progress import track
    from asrkit.recognize.formats import to_ctm
    from asrkit.recognize.recognizer import Recognizer

    recognizer = Recognizer(exp, device)
    data = DataDir.load(data_dir)
    feats = recognizer.features_of(data)
    if recognizer.is_bundle:  # a bundle folder stays as exported: beside it
        out = out or exp.parent / f"align_{data_dir.name}_{exp.name}" / "ctm"
    out = out or ((exp if exp.is_dir() else exp.parent) / f"align_{data_dir.name}" / "ctm")
    lines, failed, unknown = [], [], 0
    for utt in track(data.utt_ids(), "aligning"):
        text = data.text[utt]
        unknown += recognizer.tokenizer.count_unknown(text)
        try:
            words = recognizer.align_words(feats[utt], recognizer.tokenizer.encode(text))
        except DecodeError as exc:
            failed.append((utt, str(exc)))
            continue
        lines.append(to_ctm(utt, words))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    if unknown:
        log.warning("%d characters of the transcripts are not in the model's token table (aligned as <unk>)",
                    unknown)
    if failed:
        log.warning("%d utterances could not be aligned, e.g. %s: %s", len(failed), *failed[0])
    typer.echo(f"{out}: {len(lines)} utterances aligned" + (f", {len(failed)} not" if failed else ""))


@app.command("eval")
def evaluate(
    ref: Path = typer.Argument(..., help="Reference: a Kaldi 'text' file or a data dir."),
    hyp: Path = typer.Argument(..., help="Hypothesis: a Kaldi 'text' file (e.g. from asrkit decode)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write per_utt and wer (default: HYP's dir)."),
    lowercase: bool = typer.Option(False, "--lowercase", help="Lowercase both sides before scoring."),
    remove_punct: bool = typer.Option(False, "--remove-punct", help="Remove ASCII punctuation before scoring."),
) -> None:
    """Score WER and CER; a missing hypothesis counts as all deletions."""
    from asrkit.scoring import read_text_file, score, summary_line, write_per_utt

    for path in (ref, hyp):
        if not path.exists():
            raise AsrkitError(f"{path} does not exist")
    report = score(read_text_file(ref), read_text_file(hyp), lowercase, remove_punct)
    out = out or (hyp if hyp.is_dir() else hyp.parent)
    out.mkdir(parents=True, exist_ok=True)
    write_per_utt(report, out / "per_utt")
    (out / "wer").write_text(summary_line(report) + f"\nnormalization: {report.normalization}\n", encoding="utf-8")
    table = Table(title=f"{hyp}")
    for column in ("unit", "error rate", "errors", "ref", "sub", "del", "ins"):
        table.add_column(column, justify="right")
    for name, counts in (("word", report.word), ("char", report.char)):
        table.add_row(name, f"{100 * counts.rate:.2f}%", str(counts.errors), str(counts.ref_len),
                      str(counts.substitutions), str(counts.deletions), str(counts.insertions))
    Console().print(table)
    typer.echo(f"utterances: {report.num_utts}; normalization: {report.normalization}")
    if report.missing:
        log.warning("%d reference utterances have no hypothesis (scored as deletions), e.g. %s",
                    len(report.missing), report.missing[0])
    if report.extra:
        log.warning("%d hypotheses have no reference and were ignored, e.g. %s", len(report.extra), report.extra[0])
    typer.echo(summary_line(report))
    typer.echo(f"alignments: {out / 'per_utt'}; summary: {out / 'wer'}")
