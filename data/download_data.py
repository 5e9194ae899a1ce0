"""Download MNIST or CIFAR-10 into the layout of ``data/layout.py``, which ``load_data.py`` reads.

Usage (from the repository root, or ``python download_data.py ...`` from inside ``data/``)::

    python data/download_data.py --data_set MNIST
    python data/download_data.py --data_set cifar-10 --mirror http://127.0.0.1:8765
    python data/download_data.py --data_set cifar-10 --remove

pooch checks each file against the md5 registry of ``layout.DATA_SETS`` and moves it into place
only once complete and verified. The transfer itself is :class:`_Downloader` (a pooch downloader):
retries with backoff, restarts of a broken-off file, a deadline and a progress line.
See docs/data.md for mirrors, verification and exit statuses.
"""

import gzip
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

if not __package__:  # run as ``python data/download_data.py``: sys.path[0] is data/, not the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnn import cli  # noqa: E402 (stdlib only, like data.layout: --help stays instant)
from bnn.errors import BnnError  # noqa: E402
from data.layout import (CIFAR10_ARCHIVE, DATA_DIR_ENV, DATA_SETS, DEFAULT_DATA_DIR,  # noqa: E402
                         MIRROR_ENV, canonical_data_set, data_set_dir, download_command,
                         resolve_data_dir)

class DownloadError(BnnError):
    """Bad input or a damaged file, in one actionable line (exit status 2)."""


class FetchError(DownloadError):
    """A file could not be fetched (network, HTTP status, timeout): exit status 1.

    ``restartable``: the transfer broke off mid-file, so starting the file over may help.
    """

    exit_status = cli.EXIT_OUTSIDE

    def __init__(self, message, restartable=False):
        super().__init__(message)
        self.restartable = restartable


class UnsafeArchiveError(DownloadError):
    """An archive or a file in it that is corrupt, or would write outside its target folder."""


def make_session(retries=5, backoff_factor=0.5):
    """A ``requests.Session`` retrying failed connects and 429/5xx answers, with backoff."""
    import requests
    from urllib3.util.retry import Retry

    # read=0: a server that stops sending fails after one read timeout, not after retries more.
    retry = Retry(total=retries, connect=retries, read=0, status=retries, raise_on_status=False,
                  backoff_factor=backoff_factor, status_forcelist=(429, 500, 502, 503, 504))
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
    session.mount("https://", requests.adapters.HTTPAdapter(max_retries=retry))
    return session


def _describe(exc):
    """The reason inside a requests / urllib3 exception, in a few words without object reprs."""
    import requests
    import urllib3

    while isinstance(exc, (requests.RequestException, urllib3.exceptions.MaxRetryError,
                           urllib3.exceptions.ProtocolError)):
        inner = getattr(exc, "reason", None)
        inner = inner if isinstance(inner, BaseException) else next(
            (a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        exc = inner
    text = str(exc)
    if "IncompleteRead" in type(exc).__name__:
        text = f"connection broken: {text}"
    text = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*|HTTPS?Connection(Pool)?\([^)]*\):?\s*",
                  "", text)
    return " ".join(text.split()).strip(" .;") or type(exc).__name__


class _Downloader:
    """A pooch downloader: ``url`` into pooch's temporary file, restarting a broken-off transfer.

    ``end`` (a ``time.monotonic()`` value or None) bounds the whole file, restarts included, so a
    server that trickles bytes forever fails too. ``md5`` holds the last transfer's digest.
    """

    def __init__(self, session, timeout, retries, progress, end):
        self.session, self.timeout, self.retries = session, timeout, retries
        self.progress, self.end, self.md5 = progress and sys.stderr.isatty(), end, None

    def __call__(self, url, output_file, pooch, check_only=False):
        for attempt in range(self.retries + 1):
            try:
                with open(output_file, "wb") as out:
                    return self._stream(url, out)
            except FetchError as e:
                if not e.restartable or attempt == self.retries:
                    raise

    def _stream(self, url, out):
        import hashlib
        import requests
        import urllib3

        fail = f"could not download {url}"
        try:
            response = self.session.get(url, stream=True, timeout=self.timeout)
        except requests.RequestException as e:
            raise FetchError(f"{fail}: {_describe(e)}") from e
        with response:
            if response.status_code != 200:
                raise FetchError(f"{fail}: HTTP {response.status_code} {response.reason}")
            total, size, digest, shown = int(response.headers.get("Content-Length") or 0), 0, \
                hashlib.md5(), 0.0
            try:  # decode_content=False keeps the bytes as published; read1 returns what arrived
                for chunk in iter(lambda: response.raw.read1(1 << 16, decode_content=False), b""):
                    if self.end is not None and time.monotonic() > self.end:
                        raise FetchError(f"{fail}: still incomplete after the --deadline ({size} "
                                         "bytes received); try a faster mirror")
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if self.progress and time.monotonic() - shown > 0.1:
                        shown = time.monotonic()
                        sys.stderr.write(f"\r  {url.rsplit('/', 1)[-1]}  {size / 1e6:.1f}"
                                         f"/{total / 1e6:.1f} MB")
            except urllib3.exceptions.ReadTimeoutError as e:  # the server stopped: no restart
                raise FetchError(f"{fail}: {_describe(e)}") from e
            except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
                raise FetchError(f"{fail}: {_describe(e)}", restartable=True) from e
            finally:
                if self.progress:
                    sys.stderr.write("\n")
            if total and size != total and "Content-Encoding" not in response.headers:
                raise FetchError(f"{fail}: connection closed after {size} of {total} bytes",
                                 restartable=True)
        self.md5 = digest.hexdigest()


def fetch_file(urls, dest, expected_md5=None, *, session=None, timeout=(10, 60),
               allow_unverified=False, retries=5, backoff_factor=0.5, progress=True,
               deadline=3600.0):
    """Download ``dest`` from the first of ``urls`` that works; return its md5.

    pooch streams it to a temporary file beside ``dest`` and moves it in only once complete and
    its md5 is ``expected_md5`` (None, or ``allow_unverified``: kept with a warning). ``timeout``
    is (connect, read) seconds; ``retries`` bounds retried requests (``backoff_factor`` as in
    urllib3) and restarts of a broken-off file; ``deadline`` the seconds for the whole file.
    Raises FetchError naming each URL and why, or DownloadError for an md5 mismatch.
    """
    import pooch

    pooch.get_logger().setLevel("WARNING")  # the progress and errors are ours, in one line each
    dest = Path(dest)
    known = None if allow_unverified or expected_md5 is None else f"md5:{expected_md5}"
    fetch = _Downloader(session or make_session(retries, backoff_factor), timeout, retries,
                        progress, None if deadline is None else time.monotonic() + deadline)
    failures = []
    for url in urls:
        print(f"downloading {url}")
        try:
            pooch.retrieve(url, known, fname=dest.name, path=dest.parent, downloader=fetch)
        except FetchError as e:
            failures.append(str(e).removeprefix("could not download "))
            continue
        except ValueError:  # pooch found another md5 and has deleted its temporary file
            raise DownloadError(f"md5 mismatch for {dest.name} from {url}: expected "
                                f"{expected_md5}, got {fetch.md5}; the file was not kept (pass "
                                "--allow_unverified to keep it anyway)") from None
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(dest, 0o666 & ~mask)  # pooch's temporary file was owner-only
        if expected_md5 and fetch.md5 != expected_md5:
            print(f"warning: md5 mismatch for {dest.name} from {url}: expected {expected_md5}, "
                  f"got {fetch.md5}; keeping it because of --allow_unverified", file=sys.stderr)
        return fetch.md5
    also = f" (also tried: {'; '.join(failures[1:])})" if len(failures) > 1 else ""
    raise FetchError(f"could not download {failures[0]}{also}")


def extract_archive(archive, dest_dir, top_dir, expected_files=()):
    """Unpack the ``.tar.gz`` ``archive`` so that ``dest_dir/top_dir`` appears complete or not at all.

    Only plain files and folders with relative paths inside the archive are allowed (checked
    before anything is written), and tarfile's ``'data'`` filter is applied as a second guard.
    The archive is unpacked into a temporary folder inside ``dest_dir``; ``top_dir`` is then moved
    into place. Raises UnsafeArchiveError if a member is unsafe, the archive is unreadable, or it
    lacks one of ``expected_files``.
    """
    dest_dir = Path(dest_dir).resolve()
    fix = f"delete {archive} and download it again"
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for m in tar.getmembers():
                    path = PurePosixPath(m.name)
                    if path.is_absolute() or ".." in path.parts or not (m.isfile() or m.isdir()):
                        raise UnsafeArchiveError(f"refusing to extract {archive}: member {m.name!r}"
                                                 f" is a link, a special file or a path outside "
                                                 f"its folder; {fix} from a trusted source")
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise UnsafeArchiveError(f"{archive} is corrupt ({e}); {fix}") from e
        missing = [f for f in expected_files if not (tmp / top_dir / f).is_file()]
        if missing:
            raise UnsafeArchiveError(f"{archive} lacks {top_dir}/{missing[0]}; {fix}")
        shutil.rmtree(dest_dir / top_dir, ignore_errors=True)
        os.replace(tmp / top_dir, dest_dir / top_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir / top_dir


def download(data_set, data_dir=None, *, mirror=None, allow_unverified=False, retries=5,
             backoff_factor=0.5, timeout=(10, 60), md5s=None, progress=True, deadline=3600.0):
    """Download (and for CIFAR-10 extract) ``data_set`` into ``data_dir`` unless already there.

    ``mirror`` (default ``$BNN_DATA_MIRROR``, else the official sources) is a base URL serving
    ``mnist/<file>`` and ``cifar10/<archive>``; ``md5s`` overrides published md5s by file name.
    With ``allow_unverified`` every file is then read through as load_data reads it, and all
    that fail are deleted and named in one error. Other arguments are :func:`fetch_file`'s.
    Returns the data set's folder; raises DownloadError (one line, ``exit_status`` 1 or 2).
    """
    import pooch

    spec = DATA_SETS[canonical_data_set(data_set)]
    folder = resolve_data_dir(data_dir) / spec.subdir
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if mirror and (urlsplit(mirror).scheme not in ("http", "https") or not urlsplit(mirror).netloc):
        raise DownloadError(f"--mirror (or ${MIRROR_ENV}) must be an http(s) URL such as "
                            f"http://127.0.0.1:8765, got {mirror!r}")
    bases = (mirror.rstrip("/") + f"/{spec.subdir}/",) if mirror else spec.official_urls
    session = make_session(retries, backoff_factor)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {folder} ({e.strerror}): pass --data_dir a folder "
                            "you can write to") from e
    present = []  # printed once the read-through check has passed, so never a corrupt file
    try:
        extracted = spec.archive and all((folder / spec.extract_dir / f).is_file()
                                         for f in spec.extracted_files)
        for name, md5 in spec.md5s.items():
            md5, dest = (md5s or {}).get(name, md5), folder / name
            if name == spec.archive and extracted and not dest.exists():
                continue  # its complete extracted copy is what load_data reads
            if not dest.exists():
                try:
                    fetch_file([base + name for base in bases], dest, md5, session=session,
                               timeout=timeout, allow_unverified=allow_unverified,
                               retries=retries, progress=progress, deadline=deadline)
                except FetchError as e:
                    raise FetchError(f"{e}; " + (f"check that the mirror serves {spec.subdir}/"
                                     f"{name}" if mirror else "check the network connection, "
                                     "or pass --mirror BASE_URL")) from e
                continue
            got = pooch.file_hash(str(dest), alg="md5")
            if got != md5 and not allow_unverified:
                raise DownloadError(f"{dest} is already present but its md5 differs: expected "
                                    f"{md5}, got {got}; pass --allow_unverified to use it, or "
                                    f"run {download_command(spec.name, data_dir)} --remove and "
                                    "download again")
            if got != md5:
                print(f"warning: md5 mismatch for {dest}: expected {md5}, got {got}; using it "
                      "because of --allow_unverified", file=sys.stderr)
            present.append(f"{dest} is already present")
        if spec.archive and extracted:
            present.append(f"{folder / spec.extract_dir} is already extracted")
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
            _delete_corrupt(spec, folder, data_dir)
    except BaseException:
        if folder.is_dir() and not any(folder.iterdir()):  # leave no empty folder behind
            folder.rmdir()
        raise
    print("\n".join(present + [f"{spec.name} is ready in {folder}"]))
    return folder


def _delete_corrupt(spec, folder, data_dir):
    """Delete every file of ``spec`` that fails load_data's read-through; name all in one error."""
    from data.load_data import find_corrupt

    corrupt = find_corrupt(spec.name, data_dir)
    if not corrupt:
        return
    for path in ([folder / spec.extract_dir, folder / spec.archive] if spec.archive
                 else [path for path, _ in corrupt]):
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    what = "; ".join(f"{path} is corrupt ({why})" for path, why in corrupt)
    deleted = (f"{spec.archive} and {spec.extract_dir} were" if spec.archive else
               "it was" if len(corrupt) == 1 else f"these {len(corrupt)} files were")
    raise UnsafeArchiveError(f"{what}; {deleted} deleted: download again, from another "
                             "--mirror if it fails again")


def remove(data_set, data_dir=None):
    """Delete ``data_set``'s downloaded files, extracted folder and leftover temporary files.

    Only those, and its folder if that leaves it empty. Returns the paths removed.
    """
    spec = DATA_SETS[canonical_data_set(data_set)]
    folder = resolve_data_dir(data_dir) / spec.subdir
    found = [folder / name for name in [*spec.md5s, spec.extract_dir] if name]
    if folder.is_dir():  # what an interrupted pooch transfer or extraction may leave
        found += [*folder.glob("tmp????????"), *folder.glob(".extract-*")]
    removed = [path for path in found if path.exists() or path.is_symlink()]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        removed.append(folder)
    return removed


EPILOG = ("Exit status: 0 success; 1 a file could not be downloaded (network, HTTP error, "
          "timeout: retrying later may help) or the disk failed; 2 bad input (a flag's value, "
          "an md5 mismatch, a corrupt or unsafe file, an unwritable folder); 130 interrupted. "
          "Errors are one line on stderr starting with 'error:'. See docs/data.md.")


def build_parser():
    """The command line; stdlib only, so ``--help`` imports neither pooch nor requests."""
    parser = cli.Parser("download_data.py", "Download MNIST or CIFAR-10, verified against the "
                        "published md5, into the layout that data/load_data.py reads.",
                        epilog=EPILOG)
    add, seconds = parser.add_argument, cli.finite_float(0, 1e6, low_open=True)
    add("--data_set", required=True, metavar="{MNIST,cifar-10}",
        help="data set to download (case-insensitive)")
    add("--data_dir", type=cli.path_arg,
        help=f"data directory (default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR})")
    add("--mirror", metavar="BASE_URL", help="fetch BASE_URL/mnist/<file> and BASE_URL/cifar10/"
        f"{CIFAR10_ARCHIVE} instead of the official sources (default: ${MIRROR_ENV})")
    add("--allow_unverified", action="store_true", help="keep files whose md5 differs from the "
        "published one (warns) if they read through as data/load_data.py reads them")
    add("--remove", action="store_true", help="delete this data set's downloaded files instead")
    add("--retries", type=cli.bounded_int(0, 100), default=5,
        help="retries per request on connection errors and 5xx (default: 5)")
    add("--timeout", type=seconds, default=60.0,
        help="seconds to wait for the server to send data, at most 1e6 (default: 60)")
    add("--deadline", type=seconds, default=3600.0,
        help="seconds each file may take in all, however slowly it comes (default: 3600)")
    return parser


def main(argv=None):
    """Run the command line; return the exit status (one ``error:`` line for any failure)."""
    return cli.run(_main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    try:
        data_set = canonical_data_set(args.data_set)
    except ValueError as e:
        raise DownloadError(str(e)) from None
    if not args.remove:
        download(data_set, args.data_dir, mirror=args.mirror, retries=args.retries,
                 allow_unverified=args.allow_unverified, deadline=args.deadline,
                 timeout=(min(10.0, args.timeout), args.timeout))
        return cli.EXIT_OK
    removed = remove(data_set, args.data_dir)
    print("\n".join(f"removed {path}" for path in removed) or
          f"nothing to remove: {data_set} is not downloaded in {resolve_data_dir(args.data_dir)}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
