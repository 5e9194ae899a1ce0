"""Fetch one file over HTTP(S) into place, verified by pooch: the transfer half of the downloader.

:func:`fetch_file` hands each URL to ``pooch.retrieve``, which streams into a temporary file beside
the destination, checks the md5 and only then moves the file into place. The streaming is
:class:`_Downloader`, a pooch downloader: a ``requests`` session that retries failed connects and
5xx answers with backoff, restarts of a transfer that broke off mid-file, a deadline for the whole
file (a server that trickles bytes forever fails too), and a progress line on a terminal.
Errors are :class:`FetchError` (exit status 1) or :class:`DownloadError` (2), each one line.
"""

import os
import re
import sys
import time
from pathlib import Path

from bnn import cli
from bnn.errors import BnnError


class DownloadError(BnnError):
    """Bad input or a damaged file, in one actionable line (exit status 2)."""


class FetchError(DownloadError):
    """A file could not be fetched (network, HTTP status, timeout): exit status 1."""

    exit_status = cli.EXIT_OUTSIDE


class _BrokenOff(FetchError):
    """The transfer broke off mid-file: starting the file over may help."""


def make_session(retries=5, backoff_factor=0.5):
    """A ``requests.Session`` retrying failed connects and 429/5xx answers, with backoff."""
    import requests
    from urllib3.util.retry import Retry

    # read=0: a server that stops sending fails after one read timeout, not after retries more.
    adapter = requests.adapters.HTTPAdapter(max_retries=Retry(
        total=retries, connect=retries, read=0, status=retries, raise_on_status=False,
        backoff_factor=backoff_factor, status_forcelist=(429, 500, 502, 503, 504)))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _describe(exc):
    """The reason inside a requests / urllib3 exception, without object reprs and pool names."""
    text = " ".join(str(exc).split())
    found = re.findall(r"\[(?:Errno -?\d+|SSL: \w+)\] [^'\"()]+|Connection to \S+ timed out|"
                       r"Read timed out|Connection broken: \w+\([^)]*\)", text)
    return found[-1].strip() if found else re.sub(r"\S*(Pool|object at)[^:]*: ", "", text)


class _Downloader:
    """A pooch downloader: ``url`` into pooch's temporary file, restarting a broken-off transfer.

    ``end`` (a ``time.monotonic()`` value or None) bounds the whole file, restarts included, so a
    server that trickles bytes forever fails too. ``md5`` is the last transfer's digest.
    """

    def __init__(self, session, timeout, retries, progress, end):
        self.session, self.timeout, self.retries = session, timeout, retries
        self.progress, self.end, self.md5 = progress and sys.stderr.isatty(), end, None

    def __call__(self, url, output_file, pooch, check_only=False):
        self.md5 = None
        for attempt in range(self.retries + 1):
            try:
                with open(output_file, "wb") as out:
                    return self._stream(url, out, f"could not download {url}")
            except _BrokenOff:
                if attempt == self.retries:
                    raise

    def _stream(self, url, out, fail):
        import hashlib

        import requests
        import urllib3

        try:
            response = self.session.get(url, stream=True, timeout=self.timeout)
        except requests.RequestException as e:
            raise FetchError(f"{fail}: {_describe(e)}") from e
        with response:
            if response.status_code != 200:
                raise FetchError(f"{fail}: HTTP {response.status_code} {response.reason}")
            total, size, digest, shown = int(response.headers.get("Content-Length") or 0), 0, \
                hashlib.md5(), 0.0
            name, of = url.rsplit("/", 1)[-1], f"/{total / 1e6:.1f}" if total else ""

            def draw(end=""):
                print(f"\r  {name}  {size / 1e6:.1f}{of} MB", end=end, file=sys.stderr, flush=True)

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
                        draw()
            except urllib3.exceptions.ReadTimeoutError as e:  # the server stopped: no restart
                raise FetchError(f"{fail}: {_describe(e)}") from e
            except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
                raise _BrokenOff(f"{fail}: {_describe(e)}") from e  # IncompleteRead among them
            finally:
                if self.progress:
                    draw("\n")
        self.md5 = digest.hexdigest()


def fetch_file(urls, dest, expected_md5=None, *, session=None, timeout=(10, 60),
               allow_unverified=False, retries=5, backoff_factor=0.5, progress=True,
               deadline=3600.0):
    """Download ``dest`` from the first of ``urls`` that works, verified, and return its md5.

    pooch streams it to a temporary file beside ``dest`` and moves it into place only once it is
    complete and its md5 is ``expected_md5``, so ``dest`` never holds a partial or (unless
    ``allow_unverified``) an unverified file.

    Parameters
    ----------
    urls : sequence of str
        Full URLs of the same file, tried in order until one downloads.
    dest : Path
        Final path.
    expected_md5 : str or None
        Published hex md5; None skips verification.
    session : requests.Session or None
        Session to use (default: ``make_session(retries, backoff_factor)``).
    timeout : (float, float)
        Connect and read timeouts in seconds.
    allow_unverified : bool
        Keep a file whose md5 differs, with a warning, instead of raising DownloadError.
    retries, backoff_factor : int, float
        Retries of a failed request (urllib3's backoff) and restarts of a broken-off transfer.
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
        No URL could be downloaded; the message names the URLs and why (exit status 1).
    DownloadError
        The md5 differs and ``allow_unverified`` is False (exit status 2).
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
            if fetch.md5 is None:  # not from pooch's md5 check: a bug, not the user's input
                raise
            raise DownloadError(f"md5 mismatch for {dest.name} from {url}: expected "
                                f"{expected_md5}, got {fetch.md5}; the file was not kept (pass "
                                "--allow_unverified to keep it anyway)") from None
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(dest, 0o666 & ~mask)  # pooch's temporary file was owner-only
        if expected_md5 and fetch.md5 != expected_md5:
            print(f"warning: md5 mismatch for {dest.name} from {url}: expected {expected_md5}, "
                  f"got {fetch.md5}; keeping it because of --allow_unverified", file=sys.stderr)
        return fetch.md5 or pooch.file_hash(str(dest), alg="md5")  # None: dest was there
    also = f" (also tried: {'; '.join(failures[1:])})" if len(failures) > 1 else ""
    raise FetchError(f"could not download {failures[0]}{also}")
