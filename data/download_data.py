"""Download MNIST or CIFAR-10 into the layout of ``data/layout.py``, which ``load_data.py`` reads.

    python data/download_data.py --data_set MNIST          (or from data/: python download_data.py)
    python data/download_data.py --data_set cifar-10 --mirror http://127.0.0.1:8765
    python data/download_data.py --data_set cifar-10 --remove

pooch checks each file against the md5 registry of ``layout.DATA_SETS`` and moves it into place
only once complete and verified; ``data/fetch.py`` streams it (retries with backoff, restarts of a
broken-off file, a deadline, a progress line). docs/data.md: mirrors, checks, exit statuses.
"""

import gzip
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

if not __package__:  # run as ``python data/download_data.py``: sys.path[0] is data/, not the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnn import cli  # noqa: E402 (stdlib only, as data.layout is: --help stays instant)
from data.fetch import DownloadError, FetchError, fetch_file, make_session  # noqa: E402
from data.layout import (CIFAR10_ARCHIVE, DATA_DIR_ENV, DATA_SETS, DEFAULT_DATA_DIR,  # noqa: E402
                         MIRROR_ENV, canonical_data_set, data_set_dir, download_command,
                         resolve_data_dir)

__all__ = ["DATA_SETS", "DownloadError", "FetchError", "UnsafeArchiveError", "data_set_dir",
           "download", "extract_archive", "fetch_file", "remove"]


class UnsafeArchiveError(DownloadError):
    """An archive, or a file from it, that is corrupt or would write outside its folder."""


def extract_archive(archive, dest_dir, top_dir, expected_files=()):
    """Unpack the ``.tar.gz`` ``archive`` so that ``dest_dir/top_dir`` appears whole or not at all.

    Only plain files and folders at relative paths are allowed (checked before anything is
    written), with tarfile's ``'data'`` filter as a second guard. The archive is unpacked into a
    temporary folder in ``dest_dir`` and ``top_dir`` moved into place. Raises UnsafeArchiveError
    for an unsafe member, an unreadable archive, or a missing one of ``expected_files``.
    """
    dest_dir, fix = Path(dest_dir).resolve(), f"delete {archive} and download it again"
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for m in tar.getmembers():
                    path = PurePosixPath(m.name)
                    if path.is_absolute() or ".." in path.parts or not (m.isfile() or m.isdir()):
                        raise UnsafeArchiveError(f"refusing to extract {archive}: member {m.name!r}"
                                                 " is a link, a special file or outside its "
                                                 f"folder; {fix} from a trusted source")
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
             backoff_factor=0.5, timeout=(10, 60), progress=True, deadline=3600.0):
    """Download (and for CIFAR-10 extract) ``data_set`` unless it is already there.

    Parameters
    ----------
    data_set : str
        ``'MNIST'`` or ``'cifar-10'`` (any case).
    data_dir : str or Path or None
        Data directory (default: ``$BNN_DATA_DIR``, else this ``data/`` folder).
    mirror : str or None
        Base URL serving ``mnist/<file>`` and ``cifar10/cifar-10-python.tar.gz`` (default:
        ``$BNN_DATA_MIRROR``, else the official sources).
    allow_unverified : bool
        Keep files whose md5 differs from the published one, with a warning; every file is then
        read through as load_data reads it, and all that fail are deleted and named in one error.
    retries, backoff_factor, timeout, progress, deadline
        As in :func:`data.fetch.fetch_file`.

    Returns
    -------
    Path
        The data set's folder, e.g. ``<data_dir>/mnist``.

    Raises
    ------
    DownloadError
        One line saying what failed and what to do; ``exit_status`` 1 (network) or 2.
    """
    import pooch

    spec = DATA_SETS[canonical_data_set(data_set)]
    folder = resolve_data_dir(data_dir) / spec.subdir
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if mirror and (urlsplit(mirror).scheme not in ("http", "https") or not urlsplit(mirror).netloc):
        raise DownloadError(f"--mirror (or ${MIRROR_ENV}) must be an http(s) URL such as "
                            f"http://127.0.0.1:8765, got {mirror!r}")
    bases = (mirror.rstrip("/") + f"/{spec.subdir}/",) if mirror else spec.official_urls
    fetch_args = dict(session=make_session(retries, backoff_factor), timeout=timeout,
                      retries=retries, progress=progress, deadline=deadline)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {folder} ({e.strerror}): pass --data_dir a folder "
                            "you can write to") from e
    present = []  # said once the read-through check has passed, so never of a corrupt file
    try:
        extracted = spec.archive and all((folder / spec.extract_dir / f).is_file()
                                         for f in spec.extracted_files)
        for name, md5 in spec.md5s.items():
            dest = folder / name
            if name == spec.archive and extracted and not dest.exists():
                continue  # its complete extracted copy is what load_data reads
            if not dest.exists():
                try:
                    fetch_file([base + name for base in bases], dest, md5,
                               allow_unverified=allow_unverified, **fetch_args)
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
    for path in ([folder / spec.extract_dir, folder / spec.archive] if spec.archive and corrupt
                 else [path for path, _ in corrupt]):
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if corrupt:
        deleted = (f"{spec.archive} and {spec.extract_dir} were" if spec.archive else
                   "it was" if len(corrupt) == 1 else f"these {len(corrupt)} files were")
        raise UnsafeArchiveError("; ".join(f"{path} is corrupt ({why})" for path, why in corrupt)
                                 + f"; {deleted} deleted: download again, from another --mirror "
                                 "if it fails again")


def remove(data_set, data_dir=None):
    """Delete ``data_set``'s downloads, extracted folder and temporary files; return their paths.

    Nothing else is touched; the data set's folder goes too if that leaves it empty.
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


def build_parser():
    """The command line; stdlib only, so ``--help`` imports neither pooch nor requests."""
    parser = cli.Parser("download_data.py", "Download MNIST or CIFAR-10, verified against the "
                        "published md5, into the layout that data/load_data.py reads.", epilog=(
                            "Exit status: 0 success; 1 a download or the disk failed (retrying "
                            "later may help); 2 bad input (a flag's value, an md5 mismatch, a "
                            "corrupt or unsafe file); 130 interrupted. See docs/data.md."))
    add, seconds = parser.add_argument, cli.finite_float(0, 1e6, low_open=True)
    add("--data_set", required=True, metavar="{MNIST,cifar-10}", help="the data set (any case)")
    add("--data_dir", type=cli.path_arg,
        help=f"data directory (default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR})")
    add("--mirror", metavar="BASE_URL", help="fetch BASE_URL/mnist/<file> and BASE_URL/cifar10/"
        f"{CIFAR10_ARCHIVE} instead of the official sources (default: ${MIRROR_ENV})")
    add("--allow_unverified", action="store_true", help="keep files whose md5 differs from the "
        "published one (warns) if they read through as data/load_data.py reads them")
    add("--remove", action="store_true", help="delete this data set's downloaded files instead")
    add("--retries", type=cli.bounded_int(0, 100), default=5,
        help="retries per request on connection errors and 5xx (default: 5)")
    add("--timeout", type=seconds, default=60.0, help="seconds to wait for the server to send "
        "data (default: 60)")
    add("--deadline", type=seconds, default=3600.0, help="seconds each file may take in all, "
        "however slowly it comes (default: 3600)")
    return parser


def main(argv=None):
    """Run the command line and return its exit status (see ``--help``); errors in one line."""
    return cli.run(_main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    try:
        data_set = canonical_data_set(args.data_set)
    except ValueError as e:
        raise DownloadError(str(e)) from None
    if args.remove:
        removed = remove(data_set, args.data_dir)
        print("\n".join(f"removed {path}" for path in removed) or f"nothing to remove: "
              f"{data_set} is not downloaded in {resolve_data_dir(args.data_dir)}")
    else:
        download(data_set, args.data_dir, mirror=args.mirror, retries=args.retries,
                 allow_unverified=args.allow_unverified, deadline=args.deadline,
                 timeout=(min(10.0, args.timeout), args.timeout))


if __name__ == "__main__":
    sys.exit(main())
