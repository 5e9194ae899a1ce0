"""Tests of data/download_data.py against a local HTTP server on 127.0.0.1 (no internet)."""

import dataclasses
import hashlib
import io
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data import download_data as dd
from data.load_data import load_data
from fake_data import cifar_archive_bytes, write_cifar10, write_mnist

REPO = Path(__file__).resolve().parents[1]
MNIST_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        route = server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        status, body, mode = route
        if status != 200:
            self.send_error(status)
            return
        self.send_response(200)
        # "truncate": promise more bytes than are sent, then close the connection.
        self.send_header("Content-Length", str(len(body) + (1000 if mode == "truncate" else 0)))
        self.end_headers()
        if mode == "trickle":  # a few bytes at a time, for up to 5 s
            for i in range(100):
                self.wfile.write(body[i * 10:(i + 1) * 10])
                self.wfile.flush()
                time.sleep(0.05)
            return
        if mode == "stall":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(1.0)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        """Keep the test output free of request lines."""


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``routes``: path -> (status, body, mode)."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes, self.httpd.requests = {}, []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    def serve(self, path, body=b"", status=200, mode=None):
        self.httpd.routes[path] = (status, body, mode)

    def serve_dir(self, folder):
        """Serve every file under ``folder`` at its relative path."""
        for path in Path(folder).rglob("*"):
            if path.is_file():
                self.serve("/" + path.relative_to(folder).as_posix(), path.read_bytes())

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    monkeypatch.delenv("BNN_DATA_DIR", raising=False)
    monkeypatch.delenv("BNN_DATA_MIRROR", raising=False)


def md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def mirror(tmp_path, server):
    """The server holding a fake MNIST and CIFAR-10 (archive only) in the mirror layout.

    Returns ``{name: bytes}`` of the served files.
    """
    src = tmp_path / "mirror"
    write_mnist(src, n_train=30, n_test=10)
    write_cifar10(src, n_per_batch=4, extract=False)
    server.serve_dir(src)
    files = {p.name: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    return files


@pytest.fixture
def published(monkeypatch, mirror):
    """Make the fake files' md5s the 'published' ones."""
    for name in ("MNIST", "cifar-10"):
        spec = dd.DATA_SETS[name]
        monkeypatch.setitem(dd.DATA_SETS, name, dataclasses.replace(
            spec, md5s={f: md5(mirror[f]) for f in spec.md5s}))
    return mirror


def run_main(args, capsys):
    code = dd.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def leftovers(folder):
    """Temporary files or folders a download (pooch's ``tmp*``) or extraction could leave behind."""
    folder = Path(folder)
    return [p.name for p in [*folder.glob(".*"), *folder.glob("tmp*")]] if folder.exists() else []


# --- success and skipping ------------------------------------------------------------------

def test_mnist_download_verifies_and_loads(tmp_path, server, published, capsys):
    data_dir = tmp_path / "data"
    code, out, err = run_main(["--data_set", "mnist", "--mirror", server.url,
                               "--data_dir", str(data_dir)], capsys)
    assert code == 0, err
    assert err == ""
    for name in MNIST_NAMES:
        assert (data_dir / "mnist" / name).read_bytes() == published[name]
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(MNIST_NAMES)
    assert sorted(server.requests) == sorted(f"/mnist/{n}" for n in MNIST_NAMES)
    assert load_data("MNIST", data_dir).x_test.shape == (10, 28, 28, 1)


def test_second_run_downloads_nothing(tmp_path, server, published, capsys):
    args = ["--data_set", "MNIST", "--mirror", server.url, "--data_dir", str(tmp_path)]
    assert run_main(args, capsys)[0] == 0
    server.requests.clear()
    code, out, _ = run_main(args, capsys)
    assert code == 0 and server.requests == []
    assert "already present" in out


def test_cifar_download_extracts_once(tmp_path, server, published, capsys, monkeypatch):
    args = ["--data_set", "CIFAR-10", "--mirror", server.url, "--data_dir", str(tmp_path)]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    folder = tmp_path / "cifar10"
    assert (folder / "cifar-10-python.tar.gz").read_bytes() == published["cifar-10-python.tar.gz"]
    assert sorted(p.name for p in (folder / "cifar-10-batches-py").iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    assert leftovers(folder) == []
    assert load_data("cifar-10", tmp_path, val_fraction=0).x_train.shape == (20, 32, 32, 3)

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(dd, "extract_archive", no_extraction)
    server.requests.clear()
    code, out, _ = run_main(args, capsys)
    assert code == 0 and server.requests == [] and "already extracted" in out


def test_environment_variables_choose_mirror_and_dir(tmp_path, server, published, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("BNN_DATA_MIRROR", server.url + "/")
    monkeypatch.setenv("BNN_DATA_DIR", str(tmp_path / "env"))
    assert run_main(["--data_set", "MNIST"], capsys)[0] == 0
    assert (tmp_path / "env" / "mnist" / MNIST_NAMES[0]).is_file()


def test_default_data_dir_is_the_data_folder():
    assert dd.resolve_data_dir() == REPO / "data"
    assert dd.data_set_dir("CIFAR10") == REPO / "data" / "cifar10"


def test_fallback_url_is_tried(tmp_path, server):
    server.serve("/b/x.bin", b"payload")
    got = dd.fetch_file([server.url + "/a/x.bin", server.url + "/b/x.bin"], tmp_path / "x.bin",
                        md5(b"payload"), retries=0, progress=False)
    assert got == md5(b"payload") and (tmp_path / "x.bin").read_bytes() == b"payload"


# --- checksums -------------------------------------------------------------------------------

def test_checksum_mismatch_keeps_nothing(tmp_path, server, mirror, capsys):
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", server.url,
                             "--data_dir", str(tmp_path)], capsys)
    assert code == 2
    name = "train-images-idx3-ubyte.gz"
    assert_one_error_line(err, name, "expected f68b3c2dcbeaaa9fbdd348bbdeb94873",
                          f"got {md5(mirror[name])}", "--allow_unverified")
    assert not (tmp_path / "mnist" / name).exists()
    assert leftovers(tmp_path / "mnist") == []


def test_allow_unverified_keeps_with_warning(tmp_path, server, mirror, capsys):
    args = ["--data_set", "MNIST", "--mirror", server.url, "--data_dir", str(tmp_path),
            "--allow_unverified"]
    code, _, err = run_main(args, capsys)
    assert code == 0
    assert err.count("warning: md5 mismatch") == 4
    assert all((tmp_path / "mnist" / n).read_bytes() == mirror[n] for n in MNIST_NAMES)
    # Without the flag, the kept files are reported, not silently used or deleted.
    server.requests.clear()
    code, _, err = run_main(args[:-1], capsys)
    assert code == 2 and server.requests == []
    assert_one_error_line(err, "already present but its md5 differs", "--remove")
    assert (tmp_path / "mnist" / MNIST_NAMES[0]).exists()


# --- network failures -----------------------------------------------------------------------

def test_http_404_is_one_clean_line(tmp_path, server, capsys):
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", server.url,
                             "--data_dir", str(tmp_path), "--retries", "0"], capsys)
    assert code == 1
    assert_one_error_line(
        err, f"could not download {server.url}/mnist/train-images-idx3-ubyte.gz: HTTP 404")
    assert leftovers(tmp_path / "mnist") == []


def test_http_500_is_retried_then_reported(tmp_path, server, capsys):
    path = "/mnist/train-images-idx3-ubyte.gz"
    server.serve(path, status=500)
    with pytest.raises(dd.FetchError, match="HTTP 500"):
        dd.download("MNIST", tmp_path, mirror=server.url, retries=2, backoff_factor=0,
                    progress=False)
    assert server.requests == [path] * 3
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", server.url,
                             "--data_dir", str(tmp_path), "--retries", "0"], capsys)
    assert code == 1
    assert_one_error_line(err, f"could not download {server.url}{path}: HTTP 500")


def test_connection_dropped_mid_file(tmp_path, server, capsys):
    path = "/mnist/train-images-idx3-ubyte.gz"
    server.serve(path, b"x" * 5000, mode="truncate")
    with pytest.raises(dd.FetchError, match="could not download .*train-images"):
        dd.download("MNIST", tmp_path, mirror=server.url, retries=1, backoff_factor=0,
                    progress=False)
    assert server.requests == [path] * 2  # the broken-off file was started over once
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", server.url,
                             "--data_dir", str(tmp_path), "--retries", "0"], capsys)
    assert code == 1
    assert_one_error_line(err, f"could not download {server.url}{path}")
    assert not (tmp_path / "mnist").exists()  # no partial file, no temp file, no empty folder


def test_read_timeout(tmp_path, server):
    server.serve("/mnist/train-images-idx3-ubyte.gz", b"x" * 5000, mode="stall")
    with pytest.raises(dd.FetchError, match="timed out"):
        dd.download("MNIST", tmp_path, mirror=server.url, retries=0, timeout=(1, 0.2),
                    progress=False)
    assert not (tmp_path / "mnist").exists()  # no partial file, no temp file, no empty folder


def test_connection_refused(tmp_path, capsys):
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    code, _, err = run_main(["--data_set", "cifar-10", "--mirror", f"http://127.0.0.1:{port}",
                             "--data_dir", str(tmp_path), "--retries", "0"], capsys)
    assert code == 1
    assert_one_error_line(err, "could not download", "refused")


# --- archives ------------------------------------------------------------------------------

def _tar_gz(path, add):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add(tar)
    path.write_bytes(buffer.getvalue())
    return path


def _file(tar, name, payload=b"evil"):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _link(tar, name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink"])
def test_unsafe_archive_is_refused(tmp_path, case):
    dest = tmp_path / "cifar10"
    dest.mkdir()
    outside = tmp_path / "evil"

    def add(tar):
        _file(tar, "cifar-10-batches-py/data_batch_1", b"fine")
        if case == "dotdot":
            _file(tar, "cifar-10-batches-py/../../evil")
        elif case == "absolute":
            _file(tar, str(outside))
        elif case == "symlink":
            _link(tar, "cifar-10-batches-py/test_batch", str(outside), tarfile.SYMTYPE)
        else:
            _link(tar, "cifar-10-batches-py/test_batch", "../evil", tarfile.LNKTYPE)

    archive = _tar_gz(dest / "cifar-10-python.tar.gz", add)
    with pytest.raises(dd.UnsafeArchiveError, match="refusing to extract .*cifar-10-python"):
        dd.extract_archive(archive, dest, "cifar-10-batches-py")
    assert not outside.exists()
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-python.tar.gz"]


def test_unsafe_archive_via_cli(tmp_path, server, capsys):
    archive = _tar_gz(tmp_path / "a.tar.gz", lambda tar: _file(tar, "../evil"))
    server.serve("/cifar10/cifar-10-python.tar.gz", archive.read_bytes())
    code, _, err = run_main(["--data_set", "cifar-10", "--mirror", server.url, "--data_dir",
                             str(tmp_path / "d"), "--allow_unverified"], capsys)
    assert code == 2
    assert_one_error_line(err.replace("warning", "").split("\n", 1)[1],
                          "refusing to extract", "'../evil'")
    assert not (tmp_path / "d" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not (tmp_path / "d" / "cifar10" / "cifar-10-batches-py").exists()


def test_truncated_archive_leaves_no_half_extracted_folder(tmp_path, mirror):
    dest = tmp_path / "cifar10"
    dest.mkdir()
    archive = dest / "cifar-10-python.tar.gz"
    archive.write_bytes(mirror["cifar-10-python.tar.gz"][:-200])
    with pytest.raises(dd.UnsafeArchiveError, match="is corrupt"):
        dd.extract_archive(archive, dest, "cifar-10-batches-py")
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-python.tar.gz"]


def test_archive_missing_expected_file(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(cifar_archive_bytes({"data_batch_1": b"x"}))
    with pytest.raises(dd.UnsafeArchiveError, match="lacks cifar-10-batches-py/test_batch"):
        dd.extract_archive(archive, tmp_path, "cifar-10-batches-py",
                           ["data_batch_1", "test_batch"])
    assert not (tmp_path / "cifar-10-batches-py").exists()


# --- remove and usage -------------------------------------------------------------------------

def test_remove_deletes_only_that_data_set(tmp_path, server, published, capsys):
    for data_set in ("MNIST", "cifar-10"):
        assert run_main(["--data_set", data_set, "--mirror", server.url,
                         "--data_dir", str(tmp_path)], capsys)[0] == 0
    (tmp_path / "notes.txt").write_text("keep me")
    code, out, _ = run_main(["--data_set", "cifar-10", "--remove", "--data_dir", str(tmp_path)],
                            capsys)
    assert code == 0
    assert f"removed {tmp_path / 'cifar10' / 'cifar-10-python.tar.gz'}" in out
    assert f"removed {tmp_path / 'cifar10' / 'cifar-10-batches-py'}" in out
    assert not (tmp_path / "cifar10").exists()
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(MNIST_NAMES)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    code, out, _ = run_main(["--data_set", "cifar-10", "--remove", "--data_dir", str(tmp_path)],
                            capsys)
    assert code == 0 and "nothing to remove" in out


def test_unknown_data_set(tmp_path, capsys):
    code, _, err = run_main(["--data_set", "svhn", "--data_dir", str(tmp_path)], capsys)
    assert code == 2
    assert_one_error_line(err, "unknown data set 'svhn'", "MNIST, cifar-10")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cwd, script", [(REPO, "data/download_data.py"),
                                         (REPO / "data", "download_data.py")])
def test_script_runs_from_repo_root_and_from_data(cwd, script):
    help_ = subprocess.run([sys.executable, script, "--help"], cwd=cwd, capture_output=True,
                           text=True, timeout=60)
    assert help_.returncode == 0, help_.stderr
    assert "--data_set" in help_.stdout and "Exit status" in help_.stdout
    bad = subprocess.run([sys.executable, script, "--data_set", "nope"], cwd=cwd,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: unknown data set 'nope': choose one of MNIST, cifar-10"]


# --- unverified files are still checked; deadlines ----------------------------------------

def test_allow_unverified_still_deletes_a_truncated_file(tmp_path, server, mirror, capsys):
    name = "train-images-idx3-ubyte.gz"
    server.serve(f"/mnist/{name}", mirror[name][:-300])  # a complete response of a cut file
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", server.url, "--data_dir",
                             str(tmp_path), "--allow_unverified"], capsys)
    assert code == 2
    assert_one_error_line(err.split("\n")[-2], name, "is corrupt", "it was deleted")
    assert not (tmp_path / "mnist" / name).exists()
    assert "is ready" not in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncated", "wrong shape"])
def test_allow_unverified_still_checks_the_archive(tmp_path, server, mirror, capsys, damage):
    archive = mirror["cifar-10-python.tar.gz"][:-200]
    if damage == "wrong shape":
        import pickle
        import numpy as np
        bad = pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
        names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
        archive = cifar_archive_bytes({n: bad for n in names})
    server.serve("/cifar10/cifar-10-python.tar.gz", archive)
    code, _, err = run_main(["--data_set", "cifar-10", "--mirror", server.url, "--data_dir",
                             str(tmp_path), "--allow_unverified"], capsys)
    assert code == 2
    assert_one_error_line(err.strip().split("\n")[-1], "deleted")
    assert not (tmp_path / "cifar10").exists() or not any((tmp_path / "cifar10").iterdir())


def test_extracted_data_is_not_fetched_again_without_its_archive(tmp_path, server, published, capsys):
    assert run_main(["--data_set", "cifar-10", "--mirror", server.url, "--data_dir",
                     str(tmp_path)], capsys)[0] == 0
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").unlink()
    server.requests.clear()
    code, out, _ = run_main(["--data_set", "cifar-10", "--mirror", server.url, "--data_dir",
                             str(tmp_path)], capsys)
    assert code == 0 and server.requests == [] and "already extracted" in out


def test_a_trickling_server_meets_the_deadline(tmp_path, server):
    server.serve("/mnist/train-images-idx3-ubyte.gz", b"x" * 5000, mode="trickle")
    start = time.monotonic()
    with pytest.raises(dd.FetchError, match="deadline"):
        dd.download("MNIST", tmp_path, mirror=server.url, retries=3, timeout=(1, 2),
                    deadline=0.5, progress=False)
    assert time.monotonic() - start < 4
    assert not (tmp_path / "mnist").exists()


def test_a_stalled_server_fails_after_one_timeout(tmp_path, server):
    path = "/mnist/train-images-idx3-ubyte.gz"
    server.serve(path, b"x" * 5000, mode="stall")
    with pytest.raises(dd.FetchError, match="timed out"):
        dd.download("MNIST", tmp_path, mirror=server.url, retries=3, backoff_factor=0,
                    timeout=(1, 0.2), progress=False)
    assert server.requests == [path], "a stalled transfer was started over"


# --- bad flag values, and every corrupt file found in one run ----------------------------

@pytest.mark.parametrize("flag, value", [("--timeout", "inf"), ("--deadline", "inf"),
                                         ("--timeout", "nan"), ("--timeout", "1e300"),
                                         ("--deadline", "0"), ("--timeout", "-1")])
def test_timeouts_must_be_finite_and_positive(tmp_path, server, published, capsys, flag, value):
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", server.url, "--data_dir",
                             str(tmp_path / "d"), flag, value], capsys)
    assert code == 2
    assert_one_error_line(err, f"argument {flag}:", repr(value), "download_data.py --help")
    assert server.requests == [] and not (tmp_path / "d").exists()


@pytest.mark.parametrize("mirror", ["notaurl", "127.0.0.1:8765", "ftp://example.org", "http://"])
def test_a_mirror_that_is_not_an_http_url_is_bad_input(tmp_path, capsys, monkeypatch, mirror):
    code, _, err = run_main(["--data_set", "MNIST", "--mirror", mirror, "--data_dir",
                             str(tmp_path)], capsys)
    assert code == 2
    assert_one_error_line(err, "--mirror", "must be an http(s) URL", repr(mirror))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("BNN_DATA_MIRROR", mirror)
    code, _, err = run_main(["--data_set", "MNIST", "--data_dir", str(tmp_path)], capsys)
    assert code == 2
    assert_one_error_line(err, "BNN_DATA_MIRROR", repr(mirror))


def test_allow_unverified_deletes_and_names_every_corrupt_file_in_one_run(tmp_path, server,
                                                                          mirror, capsys):
    for name in MNIST_NAMES:  # complete responses of cut files, as from four bad mirrors
        server.serve(f"/mnist/{name}", mirror[name][: len(mirror[name]) // 2])
    args = ["--data_set", "MNIST", "--mirror", server.url, "--data_dir", str(tmp_path),
            "--allow_unverified"]
    code, _, err = run_main(args, capsys)
    assert code == 2
    assert_one_error_line(err.strip().split("\n")[-1], "these 4 files were deleted",
                          *(f"{name} is corrupt" for name in MNIST_NAMES))
    assert not (tmp_path / "mnist").exists()
    for name in MNIST_NAMES:
        server.serve(f"/mnist/{name}", mirror[name])
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert "already present" not in out and len(server.requests) == 8


def test_corrupt_files_already_present_are_never_reported_present(tmp_path, server, mirror,
                                                                   capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in MNIST_NAMES:  # as an interrupted unverified run could leave them
        (folder / name).write_bytes(mirror[name] if "labels" in name else
                                    mirror[name][: len(mirror[name]) // 2])
    code, out, err = run_main(["--data_set", "MNIST", "--mirror", server.url, "--data_dir",
                               str(tmp_path), "--allow_unverified"], capsys)
    assert code == 2 and server.requests == []
    assert_one_error_line(err.strip().split("\n")[-1], "these 2 files were deleted",
                          "train-images-idx3-ubyte.gz is corrupt",
                          "t10k-images-idx3-ubyte.gz is corrupt")
    assert "already present" not in out
    assert sorted(p.name for p in folder.iterdir()) == sorted(n for n in MNIST_NAMES
                                                              if "labels" in n)


def test_help_imports_neither_pooch_nor_requests():
    done = subprocess.run([sys.executable, "-X", "importtime", "data/download_data.py", "--help"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--deadline" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert not {"pooch", "requests", "urllib3", "numpy"} & imported
