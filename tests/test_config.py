import pytest

from asrkit.config import load_config
from asrkit.errors import ConfigError


def test_defaults_are_valid():
    cfg = load_config(None)
    assert cfg.model.rnn_type == "lstm" and cfg.model.bidirectional
    assert cfg.model.subsampling_factor == 4


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {hidden_size: 64}\ntrain: {lr: 1}\n")
    cfg = load_config(path, ["model.num_layers=2", "train.spec_augment.enabled=false"])
    assert cfg.model.hidden_size == 64 and cfg.model.num_layers == 2
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.spec_augment.enabled is False


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {hiden_size: 64}\n")
    with pytest.raises(ConfigError, match=r"c.yaml.model: unknown key 'hiden_size'"):
        load_config(path)


def test_unknown_section_and_override():
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(None, ["modle.hidden_size=3"])
    with pytest.raises(ConfigError, match="must look like"):
        load_config(None, ["model.hidden_size"])


def test_wrong_type_and_bad_value(tmp_path):
    with pytest.raises(ConfigError, match="expected int"):
        load_config(None, ["model.hidden_size=big"])
    with pytest.raises(ConfigError, match="rnn_type"):
        load_config(None, ["model.rnn_type=transformer"])
    path = tmp_path / "bad.yaml"
    path.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_fp16_autocast_gets_a_loss_scaler_and_bf16_none():
    import torch

    from asrkit.config import load_config
    from asrkit.training.trainer import grad_scaler

    assert load_config(None, ["train.amp_dtype=fp16"]).train.amp_dtype == "fp16"
    cuda = torch.device("cuda")
    assert grad_scaler(cuda, True, "fp16").is_enabled() if torch.cuda.is_available() else True
    assert not grad_scaler(torch.device("cpu"), False, "fp16").is_enabled()
    assert not grad_scaler(torch.device("cpu"), True, "bf16").is_enabled()


def test_fp16_loss_scaling_is_on_without_cuda_too_and_works_before_torch_2_3(monkeypatch):
    """The line above that needs CUDA passes trivially on a CPU runner; here the fp16 scaler is
    checked on the CPU (it multiplies the loss by its initial 2**16), and the fallback for
    torch < 2.3, which has no torch.amp.GradScaler, gives a scaler too."""
    import warnings

    import torch

    from asrkit.training.trainer import grad_scaler

    scaler = grad_scaler(torch.device("cpu"), True, "fp16")
    assert scaler.is_enabled() and scaler.scale(torch.tensor(1.0)).item() == 2.0 ** 16
    monkeypatch.delattr(torch.amp, "GradScaler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.cuda.amp.GradScaler is deprecated in new torch
        old = grad_scaler(torch.device("cpu"), False, "fp16")
    assert isinstance(old, torch.cuda.amp.GradScaler) and not old.is_enabled()


@pytest.mark.parametrize("override,message", [
    ("tokenizer.type=bpe", "tokenizer.type must be 'char' or 'sentencepiece', not 'bpe'"),
    ("tokenizer.model_type=word", "tokenizer.model_type must be 'bpe' or 'unigram', not 'word'"),
    ("tokenizer.vocab_size=2", "tokenizer.vocab_size must be >= 3"),
])
def test_impossible_tokenizer_keys_are_config_errors_naming_them(override, message):
    from asrkit.config import load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_tokenizer_defaults_are_characters():
    from asrkit.config import load_config

    cfg = load_config(None, [])
    assert (cfg.tokenizer.type, cfg.tokenizer.model_type, cfg.tokenizer.vocab_size, cfg.tokenizer.model) == \
        ("char", "bpe", 500, "")
