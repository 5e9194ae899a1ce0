"""Download MNIST or CIFAR-10 into the layout that ``load_data.py`` reads.

Usage (from the repository root, or ``python download_data.py ...`` from inside ``data/``)::

    python data/download_data.py --data_set MNIST
    python data/download_data.py --data_set cifar-10 --mirror http://127.0.0.1:8765
    python data/download_data.py --data_set cifar-10 --remove

Layout under the data directory (default: this ``data/`` folder, or ``$BNN_DATA_DIR``)::

    mnist/train-images-idx3-ubyte.gz   mnist/train-labels-idx1-ubyte.gz
    mnist/t10k-images-idx3-ubyte.gz    mnist/t10k-labels-idx1-ubyte.gz
    cifar10/cifar-10-python.tar.gz
    cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}

This file is the one home of that layout; it imports nothing from ``bnn`` and finds its
default folder from ``__file__``, so it runs from any working directory.
"""

import argparse
import gzip
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DATA_DIR_ENV = "BNN_DATA_DIR"
MIRROR_ENV = "BNN_DATA_MIRROR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent

#: Exit status of :func:`main` when a file could not be fetched (network, HTTP, timeout).
EXIT_NETWORK = 1
#: Exit status for everything else that went wrong (usage, checksum, unsafe archive, disk).
EXIT_ERROR = 2

CHUNK_SIZE = 1 << 16


@dataclass(frozen=True)
class DataSetSpec:
    """Where a data set comes from and where it lives under the data directory.

    Attributes
    ----------
    name : str
        Canonical spelling, as accepted by ``--data_set`` (case-insensitively).
    subdir : str
        Folder under the data directory holding the downloaded files.
    md5s : dict of str to str
        Published md5 of each downloaded file, by file name.
    official_urls : tuple of str
        Base URLs tried in order; a file's URL is ``base + name``.
    archive : str or None
        The downloaded file that is unpacked, or None if nothing is.
    extract_dir : str or None
        Folder the archive unpacks to (inside ``subdir``), or None if nothing is extracted.
    extracted_files : tuple of str
        Files that must exist in ``extract_dir`` after extraction.
    """

    name: str
    subdir: str
    md5s: dict
    official_urls: tuple
    archive: str = None
    extract_dir: str = None
    extracted_files: tuple = ()


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BATCHES_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

DATA_SETS = {
    "MNIST": DataSetSpec(
        name="MNIST",
        subdir="mnist",
        md5s={
            MNIST_FILES["train_images"]: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            MNIST_FILES["train_labels"]: "d53e105ee54ea40749a09fcbcd1e9432",
            MNIST_FILES["test_images"]: "9fb629c4189551a2d022fa330f9573f3",
            MNIST_FILES["test_labels"]: "ec29112dd5afa0611ce80d1b7f02629c",
        },
        # yann.lecun.com often refuses downloads; it is only a fallback.
        official_urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                       "http://yann.lecun.com/exdb/mnist/"),
    ),
    "cifar-10": DataSetSpec(
        name="cifar-10",
        subdir="cifar10",
        md5s={CIFAR10_ARCHIVE: "c58f30108f718f92721af3b95e74349a"},
        official_urls=("https://www.cs.toronto.edu/~kriz/",),
        archive=CIFAR10_ARCHIVE,
        extract_dir=CIFAR10_BATCHES_DIR,
        extracted_files=CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH, "batches.meta"),
    ),
}


class DownloadError(Exception):
    """A download that failed for a reason stated in one actionable line.

    ``exit_code`` is the status :func:`main` exits with.
    """

    exit_code = EXIT_ERROR


class FetchError(DownloadError):
    """A file could not be fetched: network, HTTP status, timeout or a dropped connection.

    ``restartable`` is True when the transfer broke off mid-file, so starting the file over
    may help (failed requests were already retried by the session).
    """

    exit_code = EXIT_NETWORK

    def __init__(self, message, restartable=False):
        super().__init__(message)
        self.restartable = restartable


class ChecksumError(DownloadError):
    """A file's md5 differs from the published one."""


class UnsafeArchiveError(DownloadError):
    """An archive that is corrupt or would write outside its target folder."""


def canonical_data_set(data_set):
    """The canonical name (``'MNIST'`` or ``'cifar-10'``) of ``data_set``, any case.

    Raises
    ------
    ValueError
        If ``data_set`` is not a known data set; the message names the valid choices.
    """
    key = str(data_set).strip().lower()
    for name in DATA_SETS:
        if key in (name.lower(), name.lower().replace("-", "")):
            return name
    raise ValueError(f"unknown data set {data_set!r}: choose one of {', '.join(DATA_SETS)}")


def resolve_data_dir(data_dir=None):
    """The data directory: ``data_dir`` if given, else ``$BNN_DATA_DIR``, else this folder."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser().resolve()


def data_set_dir(data_set, data_dir=None):
    """The folder holding ``data_set``'s files, e.g. ``<data_dir>/mnist``."""
    return resolve_data_dir(data_dir) / DATA_SETS[canonical_data_set(data_set)].subdir


def download_command(data_set, data_dir=None):
    """The shell command (run from the repository root) that downloads ``data_set``."""
    command = f"python data/download_data.py --data_set {canonical_data_set(data_set)}"
    if data_dir is not None and resolve_data_dir(data_dir) != resolve_data_dir():
        command += f" --data_dir {resolve_data_dir(data_dir)}"
    return command


def make_session(retries=5, backoff_factor=0.5):
    """A ``requests.Session`` that retries failed connects, reads and 5xx responses.

    Parameters
    ----------
    retries : int
        Retries per request (0 disables them).
    backoff_factor : float
        urllib3 backoff: the n-th consecutive retry waits ``backoff_factor * 2 ** (n - 1)`` s.
    """
    # read=0: a server that stops sending fails after one read timeout, not after retries more.
    retry = Retry(total=retries, connect=retries, read=0, status=retries,
                  backoff_factor=backoff_factor, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"GET"}), raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def file_md5(path):
    """Hex md5 digest of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(exc):
    """A short one-line reason for a requests / urllib3 exception."""
    # requests and urllib3 wrap the error that counted (MaxRetryError.reason, ProtocolError args).
    wrappers = (requests.RequestException, urllib3.exceptions.MaxRetryError,
                urllib3.exceptions.ProtocolError)
    while isinstance(exc, wrappers):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        exc = inner
    text = str(exc)
    if isinstance(exc, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead)):
        text = f"connection broken: {text}"
    text = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*", "", text)
    text = re.sub(r"HTTPS?Connection(Pool)?\(host=[^)]*\):?\s*", "", text)
    return re.sub(r"\s+", " ", text).strip(" .;") or type(exc).__name__


class _Progress:
    """A one-line progress report on stderr, redrawn in place when stderr is a terminal."""

    def __init__(self, name, total, enabled=True):
        self.name, self.total, self.done = name, total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def update(self, n):
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last > 0.1:
            self._last = now
            self._draw()

    def _draw(self):
        mb = self.done / 1e6
        if self.total:
            text = f"{mb:.1f}/{self.total / 1e6:.1f} MB {100 * self.done / self.total:3.0f}%"
        else:
            text = f"{mb:.1f} MB"
        sys.stderr.write(f"\r  {self.name}  {text}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def _stream_to(session, url, tmp, timeout, progress, deadline=None):
    """GET ``url`` into the open file ``tmp``; return its md5. Raises FetchError.

    ``deadline`` (a ``time.monotonic()`` value) bounds the whole transfer, so a server that
    trickles bytes forever fails too; a read timeout is not restartable (the server stopped).
    """
    try:
        response = session.get(url, stream=True, timeout=timeout)
    except requests.RequestException as e:
        raise FetchError(f"could not download {url}: {_describe(e)}") from e
    with response:
        if response.status_code != 200:
            raise FetchError(f"could not download {url}: HTTP {response.status_code} "
                             f"{response.reason}")
        total = int(response.headers.get("Content-Length") or 0)
        bar = _Progress(url.rsplit("/", 1)[-1], total, progress)
        digest, size = hashlib.md5(), 0
        try:
            # decode_content=False: keep the bytes exactly as published, so the md5 matches.
            # read1: return what has arrived, so the deadline is checked however slow the flow.
            for chunk in iter(lambda: response.raw.read1(CHUNK_SIZE, decode_content=False), b""):
                if deadline is not None and time.monotonic() > deadline:
                    raise FetchError(f"could not download {url}: still incomplete after the "
                                     f"--deadline ({size} bytes received); try a faster mirror")
                tmp.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        except urllib3.exceptions.ReadTimeoutError as e:
            raise FetchError(f"could not download {url}: {_describe(e)}") from e
        except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
            raise FetchError(f"could not download {url}: {_describe(e)}", restartable=True) from e
        finally:
            bar.close()
        if total and size != total and "Content-Encoding" not in response.headers:
            raise FetchError(f"could not download {url}: connection closed after {size} of "
                             f"{total} bytes", restartable=True)
    return digest.hexdigest()


def fetch_file(urls, dest, expected_md5=None, *, session=None, timeout=(10, 60),
               allow_unverified=False, retries=5, progress=True, deadline=3600.0):
    """Download ``dest.name`` from the first of ``urls`` that works, atomically, and verify it.

    The bytes go to a temporary file in ``dest``'s folder, which is renamed to ``dest`` only
    once complete and verified, so ``dest`` never holds a partial or unverified file.

    Parameters
    ----------
    urls : sequence of str
        Full URLs of the same file, tried in order until one downloads.
    dest : Path
        Final path.
    expected_md5 : str or None
        Published hex md5; None skips verification.
    session : requests.Session or None
        Session to use (default: ``make_session(retries)``).
    timeout : (float, float)
        Connect and read timeouts in seconds.
    allow_unverified : bool
        Keep a file whose md5 differs (with a warning) instead of raising ChecksumError.
    retries : int
        Times a download that broke off mid-file is restarted (per URL).
    progress : bool
        Show a progress line on stderr when it is a terminal.
    deadline : float or None
        Seconds the whole file may take, restarts and fallback URLs included.

    Returns
    -------
    str
        The file's md5.

    Raises
    ------
    FetchError
        No URL could be downloaded; the message names each URL and why.
    ChecksumError
        The md5 differs and ``allow_unverified`` is False.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    session = session or make_session(retries)
    failures = []
    end = None if deadline is None else time.monotonic() + deadline
    for url in urls:
        for attempt in range(retries + 1):
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                            dir=dest.parent)
            try:
                print(f"downloading {url}")
                with os.fdopen(fd, "wb") as tmp:
                    md5 = _stream_to(session, url, tmp, timeout, progress, end)
                _check_md5(md5, expected_md5, dest.name, url, allow_unverified)
                os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes it owner-only
                os.replace(tmp_name, dest)
                return md5
            except FetchError as e:
                failure = e
                if not e.restartable:
                    break
            finally:
                if os.path.exists(tmp_name):
                    os.remove(tmp_name)
        failures.append(str(failure))
    message = failures[0]
    if len(failures) > 1:
        message += " (also tried: " + "; ".join(f.removeprefix("could not download ")
                                                for f in failures[1:]) + ")"
    raise FetchError(message)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_md5(got, expected, name, source, allow_unverified):
    if expected is None or got == expected:
        return
    if allow_unverified:
        print(f"warning: md5 mismatch for {name} from {source}: expected {expected}, got {got}; "
              "keeping it because of --allow_unverified", file=sys.stderr)
        return
    raise ChecksumError(f"md5 mismatch for {name} from {source}: expected {expected}, got {got}; "
                        "the file was not kept (pass --allow_unverified to keep it anyway)")


def _unsafe_member(member, target):
    """Why ``member`` may not be extracted into ``target``, or None if it is safe."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", member.name) or "\\" in member.name:
        return "an absolute path"
    if ".." in path.parts:
        return "a '..' component"
    if not (member.isfile() or member.isdir()):
        return "a link or special file" if (member.issym() or member.islnk()) else \
            "a special file"
    resolved = (target / member.name).resolve()
    if resolved != target and target not in resolved.parents:
        return "a path outside the folder"
    return None


def extract_archive(archive, dest_dir, top_dir, expected_files=()):
    """Unpack ``archive`` so that ``dest_dir/top_dir`` appears complete or not at all.

    Every member is checked (no absolute paths, no ``..``, no links or devices) before any is
    written, and tarfile's ``'data'`` filter is applied as a second guard. The archive is
    unpacked into a temporary folder inside ``dest_dir`` and ``top_dir`` is then moved into
    place, replacing any earlier, incomplete copy.

    Parameters
    ----------
    archive : Path
        A ``.tar.gz`` file.
    dest_dir : Path
        Folder to unpack into.
    top_dir : str
        The folder the archive must contain, e.g. ``'cifar-10-batches-py'``.
    expected_files : sequence of str
        Files that must exist in ``top_dir``.

    Raises
    ------
    UnsafeArchiveError
        The archive is unreadable, holds an unsafe member, or lacks an expected file.
    """
    dest_dir = Path(dest_dir).resolve()
    fix = f"delete {archive} and download it again"
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()
                for member in members:
                    reason = _unsafe_member(member, tmp)
                    if reason:
                        raise UnsafeArchiveError(
                            f"refusing to extract {archive}: member {member.name!r} is {reason}; "
                            f"{fix} from a trusted source")
                tar.extractall(tmp, members=members, filter="data")
        except tarfile.FilterError as e:
            raise UnsafeArchiveError(f"refusing to extract {archive}: {e}; {fix}") from e
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise UnsafeArchiveError(f"{archive} is corrupt ({_describe(e)}); {fix}") from e
        missing = [f for f in expected_files if not (tmp / top_dir / f).is_file()]
        if missing:
            raise UnsafeArchiveError(f"{archive} lacks {top_dir}/{missing[0]}; {fix}")
        final = dest_dir / top_dir
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / top_dir, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir / top_dir


def download(data_set, data_dir=None, *, mirror=None, allow_unverified=False, retries=5,
             backoff_factor=0.5, timeout=(10, 60), md5s=None, progress=True, deadline=3600.0):
    """Download (and for CIFAR-10 extract) ``data_set`` unless it is already there.

    Parameters
    ----------
    data_set : str
        ``'MNIST'`` or ``'cifar-10'`` (any case).
    data_dir : str or Path or None
        Data directory (default: ``$BNN_DATA_DIR``, else this ``data/`` folder).
    mirror : str or None
        Base URL holding ``mnist/<file>`` and ``cifar10/cifar-10-python.tar.gz``
        (default: ``$BNN_DATA_MIRROR``, else the official sources).
    allow_unverified : bool
        Keep files whose md5 differs from the published one, with a warning.
    retries, backoff_factor : int, float
        Passed to :func:`make_session`; ``retries`` also bounds restarts of a broken-off file.
    timeout : (float, float)
        Connect and read timeouts in seconds.
    md5s : dict of str to str or None
        Expected md5 by file name, overriding the published ones (for tests, or a mirror of
        other files).
    progress : bool
        Show a progress line on stderr when it is a terminal.
    deadline : float or None
        Seconds each file's download may take in all.

    Returns
    -------
    Path
        The data set's folder, e.g. ``<data_dir>/mnist``.

    Raises
    ------
    DownloadError
        With a one-line message saying what failed and what to do.
    """
    spec = DATA_SETS[canonical_data_set(data_set)]
    folder = resolve_data_dir(data_dir) / spec.subdir
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    bases = (mirror.rstrip("/") + f"/{spec.subdir}/",) if mirror else spec.official_urls
    expected = {name: (md5s or {}).get(name, md5) for name, md5 in spec.md5s.items()}
    remove_hint = download_command(spec.name, data_dir) + " --remove"
    session = make_session(retries, backoff_factor)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {folder} ({e.strerror}): pass --data_dir a folder "
                            "you can write to") from e
    try:
        extracted = spec.archive and all((folder / spec.extract_dir / f).is_file()
                                         for f in spec.extracted_files)
        for name, md5 in expected.items():
            dest = folder / name
            if name == spec.archive and extracted and not dest.exists():
                continue  # its complete extracted copy is what load_data reads
            if dest.exists():
                got = file_md5(dest)
                if got != md5 and not allow_unverified:
                    raise ChecksumError(
                        f"{dest} is already present but its md5 differs: expected {md5}, got "
                        f"{got}; pass --allow_unverified to use it, or run {remove_hint} and "
                        "download again")
                _check_md5(got, md5, name, dest, allow_unverified)
                print(f"{dest} is already present")
                continue
            try:
                fetch_file([base + name for base in bases], dest, md5, session=session,
                           timeout=timeout, allow_unverified=allow_unverified, retries=retries,
                           progress=progress, deadline=deadline)
            except FetchError as e:
                hint = (f"check that the mirror serves {spec.subdir}/{name}" if mirror else
                        "check the network connection, or pass --mirror BASE_URL")
                raise FetchError(f"{e}; {hint}") from e
        if spec.archive and extracted:
            print(f"{folder / spec.extract_dir} is already extracted")
        elif spec.archive:
            print(f"extracting {folder / spec.archive}")
            try:
                extract_archive(folder / spec.archive, folder, spec.extract_dir,
                                spec.extracted_files)
            except UnsafeArchiveError as e:
                if not allow_unverified:
                    raise
                (folder / spec.archive).unlink()
                raise UnsafeArchiveError(f"{e}; the unverified archive was deleted") from e
        if allow_unverified:
            _check_contents(spec, folder, data_dir)
    except BaseException:
        if not any(folder.iterdir()):  # leave no empty folder behind a failed first download
            folder.rmdir()
        raise
    print(f"{spec.name} is ready in {folder}")
    return folder


def _check_contents(spec, folder, data_dir):
    """Read every file of an unverified data set as load_data will, and delete what fails.

    A file whose md5 could not be verified may still be truncated or corrupt: this checks what
    can be checked (gzip stream complete, idx header and size, the pickles' arrays and shapes).

    Raises
    ------
    UnsafeArchiveError
        Naming the file that failed and saying it was deleted.
    """
    if __package__ != "data":  # run as a script: load_data is imported as data.load_data
        sys.path.insert(0, str(DEFAULT_DATA_DIR.parent))
    from data.load_data import DataError, read_cifar_batch, read_idx

    if spec.archive:
        checks = [(folder / spec.extract_dir / name, read_cifar_batch)
                  for name in spec.extracted_files if name.startswith(("data_batch", "test"))]
    else:
        checks = [(folder / name, lambda path, data_dir: read_idx(
            path, "labels" if "labels" in path.name else "images", data_dir)) for name in spec.md5s]
    for path, read in checks:
        try:
            read(path, data_dir)
        except DataError as e:
            bad = [path] if not spec.archive else [folder / spec.extract_dir, folder / spec.archive]
            for p in bad:
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            why = str(e).split(" (", 1)[1].split("): run", 1)[0] if " (" in str(e) else str(e)
            raise UnsafeArchiveError(f"{path} is corrupt ({why}); it was deleted: download it "
                                     "again, from another --mirror if it fails again") from None


def remove(data_set, data_dir=None):
    """Delete ``data_set``'s downloaded files and folders (only those); return what was removed.

    Also removes temporary files an interrupted download may have left, and the data set's
    folder if that leaves it empty.
    """
    spec = DATA_SETS[canonical_data_set(data_set)]
    folder = resolve_data_dir(data_dir) / spec.subdir
    candidates = [folder / name for name in spec.md5s]
    if spec.extract_dir:
        candidates.append(folder / spec.extract_dir)
    if folder.is_dir():
        candidates += [p for name in spec.md5s for p in folder.glob(f".{name}.*.part")]
        candidates += list(folder.glob(".extract-*"))
    removed = []
    for path in candidates:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        removed.append(folder)
    return removed


def build_parser():
    """The command-line interface of this script."""
    parser = argparse.ArgumentParser(
        prog="download_data.py",
        description="Download MNIST or CIFAR-10 (verified against the published md5) into the "
                    "layout that data/load_data.py reads.",
        epilog=f"Exit status: 0 success; {EXIT_NETWORK} a file could not be downloaded "
               f"(network, HTTP error, timeout; retrying later may help); {EXIT_ERROR} any "
               "other error (unknown data set, md5 mismatch, unsafe or corrupt archive, "
               "unwritable folder). Errors are one line on stderr starting with 'error:'.")
    parser.add_argument("--data_set", required=True, metavar="{MNIST,cifar-10}",
                        help="data set to download (case-insensitive)")
    parser.add_argument("--data_dir", default=None,
                        help=f"data directory (default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR})")
    parser.add_argument("--mirror", default=None, metavar="BASE_URL",
                        help="fetch BASE_URL/mnist/<file> and BASE_URL/cifar10/"
                             f"{CIFAR10_ARCHIVE} instead of the official sources "
                             f"(default: ${MIRROR_ENV})")
    parser.add_argument("--allow_unverified", action="store_true",
                        help="keep files whose md5 differs from the published one (warns)")
    parser.add_argument("--remove", action="store_true",
                        help="delete this data set's downloaded files instead")
    parser.add_argument("--retries", type=int, default=5,
                        help="retries per request on connection errors and 5xx (default: 5)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server to send data (default: 60)")
    parser.add_argument("--deadline", type=float, default=3600.0,
                        help="seconds each file may take in all, however slowly it comes "
                             "(default: 3600)")
    return parser


def main(argv=None):
    """Run the command line; return the exit status instead of raising."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has already printed
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    try:
        data_set = canonical_data_set(args.data_set)
        if args.retries < 0 or not args.timeout > 0 or not args.deadline > 0:
            raise ValueError(f"--retries must be >= 0, --timeout and --deadline > 0, got "
                             f"--retries {args.retries} --timeout {args.timeout} "
                             f"--deadline {args.deadline}")
        if args.remove:
            removed = remove(data_set, args.data_dir)
            for path in removed:
                print(f"removed {path}")
            if not removed:
                print(f"nothing to remove: {data_set} is not downloaded in "
                      f"{resolve_data_dir(args.data_dir)}")
            return 0
        download(data_set, args.data_dir, mirror=args.mirror,
                 allow_unverified=args.allow_unverified, retries=args.retries,
                 timeout=(min(10.0, args.timeout), args.timeout), deadline=args.deadline)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; no partial file was kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
