"""Start one run as N processes on this machine and show their output as one log.

    python -m bnn.launch -n 2 -- run_bnn.py --data_set MNIST --conv --fc 2048 2048 2048

Each process gets Keras's distribution variables (``KERAS_DISTRIBUTION_JOB_ADDRESSES`` =
127.0.0.1 and a free port, ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``)
and ``KERAS_BACKEND=jax`` unless set; every line it prints comes out prefixed with ``[i]``, its
process id. Ctrl-C (or SIGTERM) stops all of them (each saves nothing half-done: running the same command
again resumes from the last checkpoint); when one process fails the others are stopped too, and
the launcher exits with the first failure's status. For runs over several machines, start
``run_bnn.py`` on each with ``--coordinator_address``, ``--num_processes`` and ``--process_id``
(docs/distributed.md).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from bnn import cli

# After one process fails the others end by themselves within seconds (bnn.cluster's
# watchdog); those still running after this long are killed.
GRACE_SECONDS = 20.0
HOST = "127.0.0.1"


def free_port(host=HOST):
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_env(index, count, address, base=None):
    """The environment of process ``index`` of ``count``: ``base`` plus Keras's distribution
    variables, ``KERAS_BACKEND=jax`` unless set, and unbuffered Python output."""
    env = dict(os.environ if base is None else base)
    env.setdefault("KERAS_BACKEND", "jax")
    env.update({"KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
                "KERAS_DISTRIBUTION_NUM_PROCESSES": str(count),
                "KERAS_DISTRIBUTION_PROCESS_ID": str(index), "PYTHONUNBUFFERED": "1"})
    return env


def command_of(words):
    """The command to run: a ``.py`` script runs under this Python, anything else as given."""
    return [sys.executable, *words] if words[0].endswith(".py") else list(words)


def launch(count, command, port=None, print_fn=None, grace=GRACE_SECONDS):
    """Run ``command`` as ``count`` processes of one run; return the exit status.

    Parameters
    ----------
    count : int
        Number of processes.
    command : list of str
        The command each process runs (``['run_bnn.py', '--data_set', 'MNIST', ...]``).
    port : int or None
        The coordinator's port on 127.0.0.1 (None: a free one).
    print_fn : callable or None
        Where the prefixed output lines go (None: stdout, flushed line by line).

    Returns
    -------
    int
        0 if every process succeeded; else the status of the first that failed (130 after
        Ctrl-C).
    """
    if print_fn is None:
        def print_fn(line):  # at once, also into a pipe: the log shows each line as it comes
            print(line, flush=True)
    address = f"{HOST}:{port or free_port()}"
    lock = threading.Lock()
    procs = []
    readers = []
    for i in range(count):
        # A session of its own: Ctrl-C reaches the launcher alone, which then stops each child.
        proc = subprocess.Popen(command_of(command), env=process_env(i, count, address),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        reader = threading.Thread(target=_relay, args=(proc, i, lock, print_fn), daemon=True)
        reader.start()
        readers.append(reader)
    status = None
    try:
        status = _wait(procs, grace)
    except KeyboardInterrupt:
        for proc in procs:
            _signal(proc, signal.SIGINT)
        _reap(procs, grace)
        status = cli.EXIT_INTERRUPTED
    finally:
        for proc in procs:
            _signal(proc, signal.SIGKILL)
        for reader in readers:
            reader.join(timeout=5)
    return status


def _relay(proc, index, lock, print_fn):
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            print_fn(f"[{index}] {line}")
    proc.stdout.close()


def _wait(procs, grace):
    """Wait for all; once one fails, give the others ``grace`` seconds, then kill them."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            _reap(procs, grace)
            return _status(failed[0])
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.1)


def _reap(procs, grace):
    deadline = time.time() + grace
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.1)
    for proc in procs:
        _signal(proc, signal.SIGKILL)
        proc.wait()


def _status(code):
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N


def _signal(proc, sig):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def main(argv=None):
    parser = cli.Parser("python -m bnn.launch", "Start one run as N processes on this machine "
                        "(coordinator on 127.0.0.1), with one interleaved log.",
                        usage="%(prog)s -n N [--port PORT] -- COMMAND ...")
    parser.add_argument("-n", "--num_processes", type=cli.bounded_int(1, 1024), required=True,
                        help="how many processes")
    parser.add_argument("--port", type=cli.bounded_int(1, 65535), default=None,
                        help="the coordinator's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("command", nargs="+", help="the command of every process, after --")
    args = parser.parse_args(argv)
    # Ctrl-C, kill -INT (even where a shell started the launcher with SIGINT ignored) and
    # kill -TERM all stop every process the same way.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    return launch(args.num_processes, args.command, args.port)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(cli.run(main))
