"""Downloading corpora: fetch (resuming a partial file), extract without path traversal, verify by checksum."""

from __future__ import annotations

import hashlib
import logging
import tarfile
import urllib.request
from pathlib import Path

from asrkit.errors import CorpusError

log = logging.getLogger("asrkit")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def md5_file(path: Path) -> str:
    """The sum OpenSLR publishes for its archives."""
    return file_digest(path, "md5")


def download_file(url: str, dest: Path, md5: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` with an HTTP
    Range request; with ``md5``, a finished file must match it (a mismatch is an error and the
    file is kept aside as ``.bad`` so that a retry starts afresh)."""
    dest = Path(dest)
    if dest.is_file() and (md5 is None or md5_file(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():  # a finished file with the wrong sum
        dest.replace(dest.with_name(dest.name + ".bad"))
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request) as response:
            resumed = have and response.status == 206
            if have and not resumed:
                log.info("%s: the server does not resume; downloading it whole", url)
            elif resumed:
                log.info("%s: resuming at %.1f MB", url, have / 1e6)
            with open(part, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
    except OSError as exc:
        raise CorpusError(f"cannot download {url} ({exc}); rerun to resume, or download it by hand "
                          "and pass --corpus-dir") from None
    if md5 is not None:
        actual = md5_file(part)
        if actual != md5:
            part.replace(dest.with_name(dest.name + ".bad"))
            raise CorpusError(f"{url}: MD5 {actual} is not the published {md5}; the file was kept as "
                              f"{dest.name}.bad, rerun to download it again")
    part.replace(dest)
    return dest


def tree_digest(root: Path, pattern: str) -> str:
    """sha256 over ``<relative path> <sha256>`` of the files matching ``pattern``, sorted.

    GitHub's tag archives are not byte-stable, so corpora are verified by the
    content of the files a recipe reads rather than by the archive's bytes.
    """
    digest = hashlib.sha256()
    for path in sorted(root.glob(pattern)):
        digest.update(f"{path.relative_to(root).as_posix()} {sha256_file(path)}\n".encode())
    return digest.hexdigest()


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing members that would land outside ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")  # rejects absolute paths, '..', unsafe links
    except tarfile.FilterError as exc:
        raise CorpusError(f"{archive}: unsafe archive member refused ({exc})") from None
    except (tarfile.TarError, OSError) as exc:
        raise CorpusError(f"{archive}: cannot extract ({exc})") from None


def download_corpus(url: str, download_dir: Path, folder: str, pattern: str, expected_digest: str) -> Path:
    """Fetch ``url`` into ``download_dir``, extract it, check ``tree_digest``; return the corpus root."""
    download_dir.mkdir(parents=True, exist_ok=True)
    root = download_dir / folder
    if root.is_dir() and tree_digest(root, pattern) == expected_digest:
        log.info("%s already downloaded and verified", root)
        return root
    archive = download_dir / url.rsplit("/", 1)[-1]
    if not archive.is_file():
        log.info("downloading %s", url)
        download_file(url, archive)
    safe_extract(archive, download_dir)
    if not root.is_dir():
        raise CorpusError(f"{archive} did not contain {folder}/")
    actual = tree_digest(root, pattern)
    if actual != expected_digest:
        raise CorpusError(f"{root}: checksum mismatch (got {actual[:12]}…, expected {expected_digest[:12]}…); "
                          "delete it and the archive, then retry")
    return root
