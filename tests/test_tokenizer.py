import pytest

from asrkit.errors import DataDirError
from asrkit.tokenizer import CharTokenizer


def test_build_encode_decode(tmp_path):
    tok = CharTokenizer.build(["好棒棒", "YES NO"])
    assert tok.symbols[:2] == ["<blank>", "<unk>"] and "<space>" in tok.symbols
    ids = tok.encode("YES  NO")
    assert tok.decode(ids) == "YES NO"
    assert tok.decode(tok.encode("好棒棒")) == "好棒棒"
    assert tok.encode("Z") == [tok.unk_id] and tok.count_unknown("ZZ Y") == 2
    tok.save(tmp_path)
    assert CharTokenizer.load(tmp_path / "tokens.txt").symbols == tok.symbols


def test_bad_table(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("<blank> 0\na 2\n")
    with pytest.raises(DataDirError, match="line 2"):
        CharTokenizer.load(path)
