"""Closed-vocabulary CTC beam search: what ``--lexicon`` costs and gives, against flashlight-text's lexicon decoder.

A trained AN4 model's CTC posteriors for the AN4 test and dev utterances (real
utterances, not concatenated) go to:
  - asrkit ``prefix_beam_search`` without a lexicon (the whole set as one batch);
  - asrkit ``prefix_beam_search`` with the corpus dictionary as ``lexicon``
    (``asrkit decode --lexicon``; same batch);
  - flashlight-text ``LexiconDecoder`` (C++, the engine behind torchaudio's
    ``ctc_decoder(lexicon=...)``), one utterance at a time, with a trie of the
    same words' spellings, each ending in the word separator as in
    torchaudio's lexicon files (without it, a word's last letter held over
    several frames starts a second word: "RUBOUT T"), no LM (``ZeroLM``),
    torchaudio's default options (all tokens, threshold 50, max-merging, word
    and silence scores 0).

Printed per decoder: ms per utterance, the time ratio to asrkit without a
lexicon, WER on the references, and for the two lexicon decoders how their
best texts compare under the exact CTC log-likelihood log P(text | x)
(forward algorithm): a search that keeps only dictionary words should find
the most probable such text, so asrkit must be >= flashlight on most
utterances. No attention rescoring here: this isolates the search.

    pip install flashlight-text                              # the peer (not an asrkit dependency)
    bash recipes/an4/run.sh --corpus-dir ../shared/corpora/an4   # model, data and data/lang/lexicon.txt
    python benchmarks/lexicon.py
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from beam import token_log_likelihood  # benchmarks/beam.py: run as a script, this folder is on sys.path

from asrkit.data.datadir import DataDir
from asrkit.recognize.recognizer import Recognizer
from asrkit.scoring import score
from asrkit.search.lexicon import Lexicon, read_lexicon
from asrkit.search.prefix import prefix_beam_search
from asrkit.tokenizer import SPACE

ROOT = Path(__file__).resolve().parents[1]
AN4 = ROOT / "recipes/an4"


def posteriors(recognizer: Recognizer, sets: list[Path]):
    """(ids, references, padded log-probs (B, T, V), lengths) over the data dirs."""
    ids, refs, rows = [], {}, []
    for data_dir in sets:
        data = DataDir.load(data_dir)
        feats = recognizer.features_of(data)
        text = data.text
        for utt in data.utt_ids():
            key = f"{data_dir.name}/{utt}"
            ids.append(key)
            refs[key] = text[utt]
            rows.append(recognizer.log_probs(feats[utt]))
    lengths = torch.tensor([r.shape[0] for r in rows])
    return ids, refs, torch.nn.utils.rnn.pad_sequence([torch.from_numpy(r) for r in rows], batch_first=True), lengths


def run_asrkit(log_probs, lengths, beam, space_id, lexicon=None):
    start = time.perf_counter()
    found = prefix_beam_search(log_probs, lengths, beam=beam, space_id=space_id, lexicon=lexicon)
    return [n[0].tokens for n in found], time.perf_counter() - start


def run_flashlight(log_probs, lengths, beam, words, tokenizer):
    from flashlight.lib.text.decoder import (
        CriterionType,
        LexiconDecoder,
        LexiconDecoderOptions,
        SmearingMode,
        Trie,
        ZeroLM,
    )

    vocab = log_probs.size(-1)
    space = tokenizer.index[SPACE]
    trie = Trie(vocab, space)
    spellable = [w for w in words if not w.startswith("<") and all(ch in tokenizer.index for ch in w)]
    for index, word in enumerate(spellable):
        trie.insert([tokenizer.index[ch] for ch in word] + [space], index, 0.0)
    trie.smear(SmearingMode.MAX)
    # torchaudio.models.decoder.ctc_decoder's defaults
    options = LexiconDecoderOptions(beam_size=beam, beam_size_token=vocab, beam_threshold=50.0, lm_weight=0.0,
                                    word_score=0.0, unk_score=float("-inf"), sil_score=0.0, log_add=False,
                                    criterion_type=CriterionType.CTC)
    decoder = LexiconDecoder(options, trie, ZeroLM(), space, 0, tokenizer.unk_id, [], False)
    arrays = [np.ascontiguousarray(x[:n].numpy(), dtype=np.float32) for x, n in zip(log_probs, lengths.tolist())]
    texts = []
    start = time.perf_counter()
    for x in arrays:
        result = decoder.decode(x.ctypes.data, x.shape[0], x.shape[1])[0]
        texts.append(" ".join(spellable[w] for w in result.words if w >= 0))
    return texts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, default=AN4 / "exp/bigru_1a/avg_10.pt")
    parser.add_argument("--sets", type=Path, nargs="+", default=[AN4 / "data/test", AN4 / "data/dev"])
    parser.add_argument("--lexicon", type=Path, default=AN4 / "data/lang/lexicon.txt")
    parser.add_argument("--beams", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    recognizer = Recognizer(args.exp)
    tokenizer = recognizer.tokenizer
    space = tokenizer.index[SPACE]
    words = read_lexicon(args.lexicon)
    lexicon = Lexicon(words, tokenizer, str(args.lexicon))
    ids, refs, log_probs, lengths = posteriors(recognizer, args.sets)
    print(f"{len(ids)} utterances ({', '.join(s.name for s in args.sets)}), {int(lengths.max())} frames at most, "
          f"{log_probs.size(-1)} tokens; lexicon {args.lexicon.name}: {lexicon.size} words; model {args.exp.name}")

    def texts_of(token_lists):
        return [tokenizer.decode(t) for t in token_lists]

    for beam in args.beams:
        plain, plain_s = run_asrkit(log_probs, lengths, beam, space)
        constrained, lex_s = run_asrkit(log_probs, lengths, beam, space, lexicon)
        rows = [("asrkit", plain_s, texts_of(plain)), ("asrkit + lexicon", lex_s, texts_of(constrained))]
        peer_ll = None
        try:
            peer_texts, peer_s = run_flashlight(log_probs, lengths, beam, words, tokenizer)
            rows.append(("flashlight lexicon", peer_s, peer_texts))
            peer_ll = token_log_likelihood(log_probs, lengths, [tokenizer.encode(t) for t in peer_texts])
        except ImportError as exc:
            print(f"  flashlight-text: not installed ({exc}); pip install flashlight-text")
        ours_ll = token_log_likelihood(log_probs, lengths, constrained)
        print(f"beam {beam}:")
        print(f"  {'decoder':19s} {'ms/utt':>7s} {'x asrkit':>9s} {'WER':>7s}  best-text log P (lexicon decoders)")
        for label, seconds, texts in rows:
            report = score(refs, dict(zip(ids, texts)))
            if label == "asrkit + lexicon":
                quality = f"mean {ours_ll.mean():.3f}"
            elif label == "flashlight lexicon" and peer_ll is not None:
                diff = ours_ll - peer_ll
                quality = (f"asrkit higher on {int((diff > 1e-3).sum())}, equal on {int((abs(diff) <= 1e-3).sum())}, "
                           f"lower on {int((diff < -1e-3).sum())} (mean {diff.mean():+.3f})")
            else:
                quality = ""
            print(f"  {label:19s} {1000 * seconds / len(ids):7.2f} {seconds / plain_s:8.2f}x "
                  f"{100 * report.wer:6.2f}%  {quality}")


if __name__ == "__main__":
    main()
