import pytest
import torch

from asrkit.config import ModelConfig
from asrkit.model import build_model, output_length


@pytest.mark.parametrize("rnn_type", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("subsampling", ["stack", "conv2d"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_output_independent_of_padding(rnn_type, subsampling, bidirectional):
    torch.manual_seed(0)
    cfg = ModelConfig(rnn_type=rnn_type, subsampling=subsampling, bidirectional=bidirectional,
                      num_layers=2, hidden_size=16, conv_channels=4, dropout=0.0)
    model = build_model(20, 7, cfg).eval()
    feats = torch.randn(1, 37, 20)
    alone, alone_lens = model(feats, torch.tensor([37]))
    padded = torch.cat([feats, torch.randn(1, 29, 20) * 100], dim=1)  # loud garbage padding
    other = torch.randn(1, 66, 20)
    batch, lens = model(torch.cat([padded, other]), torch.tensor([37, 66]))
    n = int(alone_lens[0])
    assert int(lens[0]) == n == output_length(37, cfg)
    assert torch.allclose(alone[0, :n], batch[0, :n], atol=1e-5)
    assert int(lens[1]) == output_length(66, cfg)
    assert torch.allclose(batch.exp().sum(-1), torch.ones(batch.shape[:2]), atol=1e-4)


def test_very_short_input_gives_one_frame():
    for subsampling in ("stack", "conv2d"):
        model = build_model(10, 5, ModelConfig(subsampling=subsampling, hidden_size=8, num_layers=1)).eval()
        out, lens = model(torch.randn(1, 2, 10), torch.tensor([2]))
        assert out.shape[1] >= 1 and int(lens[0]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_matches_cpu_and_ignores_padding():
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden_size=32, dropout=0.0)
    model = build_model(20, 7, cfg).eval()
    feats = torch.randn(2, 50, 20)
    lens = torch.tensor([50, 31])
    cpu_out, _ = model(feats, lens)
    model.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gpu_out, gpu_lens = model(feats.cuda(), lens.cuda())
        alone, _ = model(feats[1:, :31].cuda(), lens[1:].cuda())
    n = int(gpu_lens[1])
    assert gpu_out.dtype == torch.float32
    assert torch.allclose(cpu_out, gpu_out.cpu(), atol=0.1)
    assert torch.allclose(alone[0, :n].cpu(), gpu_out[1, :n].cpu(), atol=0.05)


def test_untrainable_utterances_are_dropped_and_counted():

    from asrkit.config import ExperimentConfig
    from asrkit.data.datadir import DataDir
    from asrkit.tokenizer import CharTokenizer
    from asrkit.training.loss import min_ctc_frames, select_trainable

    assert min_ctc_frames([1, 2, 2, 3]) == 5  # a blank must separate the repeated 2s
    data = DataDir()
    for utt, text, frames in (("a", "hello", 40), ("b", "hello", 23), ("c", "hi", 3000)):
        data.wav_scp[utt], data.text[utt], data.utt2spk[utt] = "/x", text, "s"
    feats = {"a": 40, "b": 23, "c": 3000}  # frames per utterance
    cfg = ExperimentConfig()  # 4x stacking: 40 -> 10 frames, 23 -> 5 (< 6 for h-e-l-_-l-o), 3000 frames = 30 s
    keep, tokens, dropped = select_trainable(data, feats, CharTokenizer.build(data.text.values()), cfg, 20.0)
    assert keep == ["a"] and dropped == {"too_long_label": 1, "too_long_audio": 1, "unknown_chars": 0}
    assert len(tokens["a"]) == 5
    # characters outside the token table map to <unk> and are counted
    data.text["a"] = "héllo!"
    keep, tokens, dropped = select_trainable(data, feats, CharTokenizer.build(["hello"]), cfg, 20.0)
    assert dropped["unknown_chars"] == 3 and tokens["a"].count(1) == 2  # é and ! here, i in "hi"


def test_decoder_memory_reads_each_utterance_to_its_own_length():
    """model.decoder_memory_layers: the decoder's bidirectional second pass starts each utterance's
    backward direction at its own last frame, so a padded batch scores as each utterance alone."""
    cfg = ModelConfig(rnn_type="gru", bidirectional=False, hidden_size=16, num_layers=2, ctc_weight=0.5,
                      decoder_hidden_size=12, attention_dim=8, decoder_embed_dim=6, decoder_memory_layers=2,
                      decoder_memory_size=5)
    torch.manual_seed(0)
    model = build_model(10, 7, cfg).eval()
    assert model.decoder.memory is not None and model.decoder.cell.input_size == 6 + 10  # reads 2 x 5
    feats = torch.randn(3, 48, 10)
    lens = torch.tensor([48, 20, 33])
    tokens = [[1, 2, 3], [4], [5, 6]]
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, lens)
        together = model.decoder.score_sequences(enc, enc_lens, [0, 1, 2], tokens)
        for row in range(3):
            alone_enc, alone_lens = model.encode(feats[row:row + 1, :lens[row]], lens[row:row + 1])
            alone = model.decoder.score_sequences(alone_enc, alone_lens, [0], [tokens[row]])
            assert abs(float(alone[0]) - float(together[row])) < 1e-4
        padded = torch.cat([enc, torch.randn(3, 5, enc.size(2))], 1)  # garbage past every length
        assert torch.allclose(torch.as_tensor(model.decoder.score_sequences(padded, enc_lens, [0, 1, 2], tokens)),
                              torch.as_tensor(together), atol=1e-4)


def test_decoder_memory_config_errors_name_the_key():
    from asrkit.errors import ConfigError

    with pytest.raises(ConfigError, match="decoder_memory_layers needs an attention decoder"):
        ModelConfig(ctc_weight=1.0, decoder_memory_layers=1).check()
    with pytest.raises(ConfigError, match="decoder_memory_layers must be 0"):
        ModelConfig(ctc_weight=0.5, decoder_memory_layers=-1).check()
    with pytest.raises(ConfigError, match="decoder_memory_size >= 1"):
        ModelConfig(ctc_weight=0.5, decoder_memory_layers=1, decoder_memory_size=0).check()
