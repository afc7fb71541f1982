"""Downloading corpora: fetch (resuming, retrying, with a timeout), extract without path traversal, verify by checksum."""

from __future__ import annotations

import hashlib
import http.client
import logging
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from asrkit.digest import file_digest
from asrkit.errors import CorpusError

log = logging.getLogger("asrkit")


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def md5_file(path: Path) -> str:
    """The sum OpenSLR publishes for its archives."""
    return file_digest(path, "md5")


def download_file(url: str, dest: Path, md5: str | None = None, *, timeout: float = 60.0, attempts: int = 5,
                  backoff: float = 2.0) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, and say why when it cannot.

    A partial ``.part`` is resumed with an HTTP Range request; one that is already whole (the
    server answers 416, Range Not Satisfiable) is finished without downloading again. A
    connection that fails, drops or stalls for ``timeout`` seconds is retried, resuming, up to
    ``attempts`` times with a growing pause (``backoff``, doubled each time). With ``md5``, a
    finished file must match it: a mismatch is kept aside as ``.bad`` and the file is downloaded
    once more from scratch; a second mismatch is the error."""
    dest = Path(dest)
    if dest.is_file() and (md5 is None or md5_file(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, bad = dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".bad")
    if dest.is_file():  # a finished file with the wrong sum
        dest.replace(bad)
    for attempt in (1, 2):
        _fetch(url, part, timeout, attempts, backoff)
        actual = md5_file(part) if md5 is not None else None
        if actual == md5:
            part.replace(dest)
            bad.unlink(missing_ok=True)
            return dest
        part.replace(bad)
        if attempt == 1:
            log.warning("%s: MD5 %s is not the published %s; downloading it again", url, actual, md5)
    raise CorpusError(f"{url}: MD5 {actual} is not the published {md5}, twice; the file was kept as {bad.name} "
                      "(download it by hand and pass --corpus-dir)")


def _fetch(url: str, part: Path, timeout: float, attempts: int, backoff: float) -> None:
    """Bring ``part`` to the whole of ``url``: resume it, retry what fails, finish a whole one."""
    error: Exception | None = None
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                _receive(url, response, part, have)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have and _whole(exc.headers.get("Content-Range"), have, part):
                log.info("%s: %s is already whole (%.1f MB)", url, part.name, have / 1e6)
                return
            if exc.code in (401, 403, 404, 410):  # no retry changes these
                raise CorpusError(f"cannot download {url} (HTTP {exc.code} {exc.reason}); download it by hand "
                                  "and pass --corpus-dir") from None
            error = exc
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, dropped, timed out
            error = exc
        if attempt < attempts:
            pause = backoff * 2 ** (attempt - 1)
            log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", url, error, pause, attempt + 1, attempts)
            time.sleep(pause)
    raise CorpusError(f"cannot download {url} ({error}; {attempts} attempts); rerun to resume, or download it by "
                      "hand and pass --corpus-dir")


def _receive(url: str, response, part: Path, have: int) -> None:
    """Write a response's body into ``part``: appended to what it has if the server resumed."""
    resumed = have and response.status == 206
    if have and not resumed:
        log.info("%s: the server does not resume; downloading it whole", url)
    elif resumed:
        log.info("%s: resuming at %.1f MB", url, have / 1e6)
    with open(part, "ab" if resumed else "wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            out.write(block)
    missing = getattr(response, "length", None)  # what the server said it would send and has not
    if missing:  # the connection closed early: what came is kept, and the next try resumes
        raise http.client.IncompleteRead(b"", missing)


def _whole(content_range: str | None, have: int, part: Path) -> bool:
    """After a 416 to ``bytes=have-``: whether ``part`` is the whole file (``bytes */TOTAL``, TOTAL the
    size it has). One larger than the file is not kept; without a total the MD5 decides."""
    total = content_range.rpartition("/")[2] if content_range and content_range.startswith("bytes */") else ""
    if not total.isdigit():
        return True
    if int(total) < have:
        part.unlink()
        return False
    return int(total) == have


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
