"""``asrkit data ...``: validate, fix, subset and split Kaldi data dirs."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import typer

from asrkit.cli.app import ALLOW_PIPES, app
from asrkit.data.datadir import DataDir, combine_data_dirs, fix_data_dir, read_table, split_data_dir
from asrkit.errors import DataDirError

log = logging.getLogger("asrkit")
data_app = typer.Typer(help="Check and reshape Kaldi-style data dirs.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("validate")
def validate(data_dir: Path = typer.Argument(..., help="Data dir (wav.scp, text, utt2spk, ...)."),
             allow_pipes: bool = ALLOW_PIPES) -> None:
    """Check sorting, unique ids, cross-file consistency and audio headers; exit 1 on the first problem."""
    from asrkit.data.audio import audio_duration, is_pipe
    from asrkit.progress import track

    data = DataDir.load(data_dir)
    data.check_pipes()
    missing = [u.audio_path for u in data.utterances() if not is_pipe(u.audio_path) and not Path(u.audio_path).is_file()]
    if missing:
        raise DataDirError(f"{data_dir / 'wav.scp'}: {len(missing)} audio files do not exist, e.g. {missing[0]}")
    durations = {rec: audio_duration(path) for rec, path in track(sorted(data.wav_scp.items()), "reading headers")}
    if data.segments is not None:
        # Kaldi's validate_data_dir allows a little slack at the end for rounding
        past = [(utt, rec, end, durations[rec]) for utt, (rec, _, end) in sorted(data.segments.items())
                if end > durations[rec] + 0.02]
        if past:
            utt, rec, end, duration = past[0]
            raise DataDirError(f"{data_dir / 'segments'}: utterance {utt!r} ends at {end:.2f}s but recording {rec!r} "
                               f"lasts {duration:.2f}s ({len(past)} such segments)")
    if (data_dir / "feats.scp").is_file():  # as Kaldi's validate_data_dir.sh: features and text agree
        from asrkit.data.featstore import check_pipes

        rows = read_table(data_dir / "feats.scp", check_sorted=False)
        check_pipes(data_dir / "feats.scp", rows)
        feats = {key for key, _, _ in rows}
        only_text, only_feats = sorted(set(data.text) - feats), sorted(feats - set(data.text))
        if only_text or only_feats:
            examples = [f"{len(only_text)} in text but not in feats.scp (e.g. {only_text[0]!r})"] if only_text else []
            examples += [f"{len(only_feats)} in feats.scp but not in text (e.g. {only_feats[0]!r})"] if only_feats else []
            raise DataDirError(f"{data_dir / 'feats.scp'}: utterances differ from text: {'; '.join(examples)}; "
                               "rerun 'asrkit features' (or 'asrkit data fix')")
    hours = (sum(e - s for _, s, e in data.segments.values()) if data.segments is not None
             else sum(durations.values())) / 3600
    typer.echo(f"{data_dir}: OK, {len(data)} utterances, {len(data.spk2utt())} speakers, {hours:.2f} hours")


@data_app.command("fix")
def fix(data_dir: Path = typer.Argument(..., help="Data dir to repair in place.")) -> None:
    """Sort files, drop utterances missing from any file, regenerate spk2utt (backup in .backup/)."""
    dropped, backup = fix_data_dir(data_dir)
    typer.echo(f"{data_dir}: fixed, {dropped} utterances dropped; originals kept in {backup}")


@data_app.command("subset")
def subset(
    data_dir: Path = typer.Argument(..., help="Source data dir."),
    out_dir: Path = typer.Argument(..., help="Where to write the subset."),
    num_utts: int = typer.Option(None, "--num-utts", "-n", help="Keep this many utterances."),
    utt_list: Path = typer.Option(None, "--utt-list", help="Keep the utterance ids listed in this file."),
    random_pick: bool = typer.Option(False, "--random", help="With --num-utts, pick at random (else the first)."),
    seed: int = typer.Option(0, help="Seed for --random."),
) -> None:
    """Write a data dir with a subset of the utterances."""
    data = DataDir.load(data_dir)
    if (num_utts is None) == (utt_list is None):
        raise DataDirError("give exactly one of --num-utts and --utt-list")
    if utt_list is not None:
        wanted = [key for key, _, _ in read_table(utt_list, min_fields=1, check_sorted=False, allow_empty_value=True)]
        unknown = [u for u in wanted if u not in data.text]
        if unknown:
            raise DataDirError(f"{utt_list}: utterance {unknown[0]!r} is not in {data_dir}")
    else:
        ids = data.utt_ids()
        if num_utts <= 0:
            raise DataDirError("--num-utts must be positive")
        wanted = random.Random(seed).sample(ids, min(num_utts, len(ids))) if random_pick else ids[:num_utts]
    data.subset(wanted).save(out_dir)
    typer.echo(f"{out_dir}: {len(wanted)} utterances")


@data_app.command("combine")
def combine(
    out_dir: Path = typer.Argument(..., help="Where to write the combined data dir."),
    data_dirs: list[Path] = typer.Argument(..., help="Data dirs to combine (e.g. LibriSpeech's three training subsets)."),
) -> None:
    """Write one data dir with the utterances of several (Kaldi's utils/combine_data.sh)."""
    data = combine_data_dirs([DataDir.load(d) for d in data_dirs], [str(d) for d in data_dirs])
    data.save(out_dir)
    DataDir.load(out_dir)
    typer.echo(f"{out_dir}: {len(data)} utterances from {len(data_dirs)} data dirs")


@data_app.command("split")
def split(
    data_dir: Path = typer.Argument(..., help="Source data dir."),
    rest_dir: Path = typer.Argument(..., help="Where the remaining utterances go."),
    held_dir: Path = typer.Argument(..., help="Where the held-out utterances go."),
    fraction: float = typer.Option(0.1, help="Share of utterances to hold out."),
    by_speaker: bool = typer.Option(False, "--by-speaker", help="Hold out whole speakers (else stratify by speaker)."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Split a data dir in two, e.g. a dev set carved from train."""
    rest, held = split_data_dir(DataDir.load(data_dir), fraction, by_speaker=by_speaker, seed=seed)
    rest.save(rest_dir)
    held.save(held_dir)
    typer.echo(f"{rest_dir}: {len(rest)} utterances; {held_dir}: {len(held)} utterances")


@data_app.command("speed-perturb")
def speed_perturb_cmd(
    data_dir: Path = typer.Argument(..., help="Source data dir."),
    out_dir: Path = typer.Argument(..., help="Where to write the perturbed data dir (audio in OUT_DIR/audio)."),
    factors: str = typer.Option("0.9,1.0,1.1", help="Comma-separated speed factors."),
    allow_pipes: bool = ALLOW_PIPES,
) -> None:
    """Kaldi-style speed perturbation: one copy per factor, ids prefixed sp<factor>-."""
    from asrkit.data.perturb import speed_perturb

    try:
        values = [float(x) for x in factors.split(",") if x.strip()]
    except ValueError:
        raise DataDirError(f"--factors must be numbers separated by commas, not {factors!r}") from None
    out = speed_perturb(DataDir.load(data_dir), out_dir, values)
    typer.echo(f"{out_dir}: {len(out)} utterances ({len(values)} speeds)")
