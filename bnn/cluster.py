"""One run over several processes (several machines, or several processes on one): JAX only.

The processes join through ``keras.distribution.initialize`` (JAX's distributed runtime; on a
CPU its collectives go through gloo) and train one network data-parallel over the global device
list. Who does what:

* every process builds, loads and trains the same model and runs every computation on it
  (SPMD: a computation on the global arrays needs all processes);
* each process feeds only its share of each global batch (:func:`local_share`): the rows of
  the batch that land on its own devices, so the epoch's order stays a function of seed and
  epoch alone and the numbers do not depend on how many processes there are;
* process 0 alone writes the run directory; the others read the checkpoint that process 0
  resumes from (:func:`agree`), so the run directory must be on a filesystem all of them see;
* a process that ends without finishing (killed, crashed, its machine gone) ends every other
  one within seconds, each with one line on stderr and exit status 1 (:class:`Watchdog`), and
  a process that cannot join within ``--cluster_timeout`` seconds ends the same way. Running
  the same commands again resumes from the newest checkpoint.

Outside such a run (one process) every function here is a no-op: ``count() == 1``.
"""

import atexit
import contextlib
import os
import socket
import sys
import threading
import time

import numpy as np

from bnn.errors import BnnError

# The environment variables keras.distribution.initialize reads when its arguments are None.
ENV_ADDRESS = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_COUNT = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_INDEX = "KERAS_DISTRIBUTION_PROCESS_ID"
HEARTBEAT_SECONDS = 2.0
# A peer silent this long is taken for gone (its machine off, the network cut): a process
# that is killed closes its connection, which is noticed at once. JAX's own heartbeat (100 s)
# would abort with a stack trace; this comes first and says it in one line.
SILENCE_SECONDS = 60.0
# Barriers wait for the slowest process (process 0 writing a checkpoint): the watchdog, not
# this timeout, is what ends a run whose process is gone.
BARRIER_MS = 24 * 3600 * 1000
# How long an unexpected error waits for the watchdog to name a lost process instead.
LOSS_GRACE_SECONDS = 5.0
_KV_WATCHDOG = "bnn/watchdog_port"


class _State:
    count, index, client, watchdog, barriers = 1, 0, None, None, 0


_state = _State()


def count():
    """Number of processes in this run (1 unless it was started as one of several)."""
    return _state.count


def index():
    """0-based id of this process (0 is the coordinator and the one that writes)."""
    return _state.index


def is_writer():
    """Whether this process writes the run directory: process 0 only."""
    return _state.index == 0


def requested(config):
    """``(address, count, index)`` of a multi-process run, or None for a one-process run.

    Flags win over Keras's environment variables (``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
    ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``).

    Raises
    ------
    BnnError
        If only some of the three are given, or they disagree.
    """
    address = config.coordinator_address or os.environ.get(ENV_ADDRESS) or None
    n = config.num_processes or _env_int(ENV_COUNT)
    i = config.process_id if config.process_id is not None else _env_int(ENV_INDEX)
    if address is None and n in (None, 1) and i in (None, 0):
        return None
    if address is None or n is None or i is None:
        raise BnnError(f"a run over several processes needs all of --coordinator_address HOST:PORT, "
                       f"--num_processes and --process_id (or ${ENV_ADDRESS}, ${ENV_COUNT}, "
                       f"${ENV_INDEX}); got {address}, {n}, {i}")
    address = address.split(",")[0]  # Keras also takes every job's address; JAX needs process 0's
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BnnError(f"--coordinator_address must be HOST:PORT (process 0's machine and a free "
                       f"port), got {address!r}")
    if config.cluster_timeout < 1:
        raise BnnError(f"--cluster_timeout must be a positive number of seconds, got {config.cluster_timeout}")
    if n < 1 or not 0 <= i < n:
        raise BnnError(f"need --num_processes >= 1 and 0 <= --process_id < --num_processes, got "
                       f"{n} and {i}")
    return address, n, i


def _env_int(name):
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BnnError(f"${name} must be an integer, got {value!r}") from None


@contextlib.contextmanager
def join(config, print_fn=print):
    """Join the run's other processes for the duration of the block (nothing for one process).

    Must be entered before JAX computes anything. On leaving with an exception, this process
    leaves without the shutdown handshake (so the others end at once, and this one exits with
    the status its error maps to instead of waiting for them).

    Raises
    ------
    BnnError
        On the TensorFlow backend (multi-process runs are JAX only), or for bad cluster flags.
    """
    found = requested(config)
    if found is None:
        yield
        return
    import keras

    if keras.backend.backend() != "jax":
        raise BnnError(f"a run over several processes needs KERAS_BACKEND=jax; the {keras.backend.backend()} "
                       "backend trains on one machine only (--distribute): drop --coordinator_address, "
                       "--num_processes and --process_id")
    address, n, i = found
    _initialize(address, n, i, config.cluster_timeout, config.seed)
    from jax._src import distributed

    _state.count, _state.index, _state.client = n, i, distributed.global_state.client
    _state.watchdog = Watchdog(address.rpartition(":")[0], n, i)
    print_fn(f"process {i} of {n} joined the run (coordinator {address})")
    try:
        yield
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt) and not hasattr(e, "exit_status"):
            # A collective fails at once when a peer's connection drops (gloo: "connection
            # reset"): let the watchdog say so in its one line instead of this traceback.
            _state.watchdog.lost.wait(LOSS_GRACE_SECONDS)
        interrupted = isinstance(e, KeyboardInterrupt)
        _state.watchdog.abandon(interrupted)
        status = 130 if interrupted else getattr(e, "exit_status", 1)
        # Registered after JAX's own shutdown hook, so it runs first: JAX's would wait for the
        # other processes at a barrier they never reach.
        atexit.register(_exit_now, status)
        raise
    _state.watchdog.finish()


def _say_and_exit(line, status, then=None):
    """Print ``line`` to stderr in one write, call ``then``, and end the process at once.

    One write, because the main thread may be printing a traceback of a failed collective at
    this moment and ``print`` writes the text and its newline separately; ``then`` (waking the
    main thread) runs only once the line is out, so its traceback cannot split the line.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(sys.stderr.fileno(), (line + "\n").encode())
    if then is not None:
        then()
    os._exit(status)


def _exit_now(status):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _initialize(address, n, i, timeout, seed):
    """``keras.distribution.initialize``, but one line and exit 1 if the run does not form."""
    import jax
    import keras

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # A seed set before initialize spares Keras a collective that agrees on a random one.
    keras.utils.set_random_seed(seed)

    def give_up():
        _say_and_exit(f"error: process {i}: the run of {n} processes did not form within "
                      f"--cluster_timeout {timeout}s through coordinator {address}: start process 0 "
                      "and every other process with the same --coordinator_address and "
                      "--num_processes (and check that this machine reaches that address)", 1)

    timer = threading.Timer(timeout, give_up)
    timer.daemon = True
    timer.start()
    initialize = jax.distributed.initialize

    def with_timeouts(*args, **kwargs):
        # JAX's own limit would abort with a stack trace: it is set past the timer's.
        return initialize(*args, initialization_timeout=int(timeout) + 30, **kwargs)

    # keras.distribution.initialize passes no timeouts to JAX: lend it one that does.
    jax.distributed.initialize = with_timeouts
    try:
        keras.distribution.initialize(address, n, i)
    finally:
        jax.distributed.initialize = initialize
        timer.cancel()


def agree(name, value):
    """Process 0's ``value`` (a str or int) on every process; ``value`` itself in a one-process run."""
    if _state.count == 1:
        return value
    key = f"bnn/{name}"
    if is_writer():
        _state.client.key_value_set(key, str(value))
        return value
    got = _state.client.blocking_key_value_get(key, BARRIER_MS)
    return type(value)(got) if value is not None else got


def barrier(name):
    """Wait until every process gets here (no-op for one process)."""
    if _state.count == 1:
        return
    _state.barriers += 1
    _state.client.wait_at_barrier(f"bnn/{name}/{_state.barriers}", BARRIER_MS)


def local_share(array, batch_size):
    """This process's rows of each global batch of ``batch_size`` rows of ``array``.

    Batch ``k`` is rows ``k * batch_size ...`` of ``array`` (the last may be shorter); process
    ``p`` of ``P`` takes its ``p``-th ``1/P`` of every batch, the rows that data parallelism over
    the global device list puts on its devices, so ``fit(local_share(x, B), batch_size=B // P)``
    on every process trains exactly like ``fit(x, batch_size=B)`` in one process over the same
    devices.

    Parameters
    ----------
    array : array, shape (n, ...)
        ``n`` and the last batch's size divisible by the process count
        (``bnn.accelerate.trim_for_devices`` sees to it).
    """
    p, n = _state.count, len(array)
    if p == 1:
        return array
    rows = []
    for start in range(0, n, batch_size):
        share = (min(batch_size, n - start)) // p
        rows.append(np.arange(start + _state.index * share, start + (_state.index + 1) * share))
    return array[np.concatenate(rows)] if rows else array[:0]


class Watchdog:
    """Ends every process of the run, with one line each, when one of them is lost.

    Process 0 listens on a port of its own (told to the others through JAX's key-value store)
    and every other process keeps a connection to it, sending a heartbeat every
    :data:`HEARTBEAT_SECONDS`. A connection that closes without a goodbye (the process was
    killed or crashed) or stays silent :data:`SILENCE_SECONDS` (its machine is gone) is a lost
    process: process 0 then closes every connection, and each process prints one line and
    exits with status 1, wherever its main thread is (a collective waiting for the lost one
    never returns).
    """

    def __init__(self, host, n, i):
        self.index, self.lock, self.peers, self.done = i, threading.Lock(), {}, False
        self.lost = threading.Event()  # set as the process is about to end for a lost peer
        if i == 0:
            self.server = socket.create_server((host, 0))
            _state.client.key_value_set(_KV_WATCHDOG, str(self.server.getsockname()[1]))
            self._thread(self._accept, n - 1)
        else:
            port = int(_state.client.blocking_key_value_get(_KV_WATCHDOG, BARRIER_MS))
            sock = socket.create_connection((host, port), timeout=SILENCE_SECONDS)
            sock.sendall(f"{i}\n".encode())
            self.peers[0] = sock
            self._thread(self._listen, 0, sock)
            self._thread(self._beat, sock)

    @staticmethod
    def _thread(target, *args):
        threading.Thread(target=target, args=args, daemon=True).start()

    def _accept(self, expected):
        for _ in range(expected):
            sock, _ = self.server.accept()
            sock.settimeout(SILENCE_SECONDS)
            peer = int(sock.makefile().readline())
            with self.lock:
                self.peers[peer] = sock
            self._thread(self._listen, peer, sock)
        self._thread(self._beat_all)

    def _beat(self, sock):
        while not self.done:
            try:
                sock.sendall(b"h")
            except OSError:
                return  # _listen notices
            time.sleep(HEARTBEAT_SECONDS)

    def _beat_all(self):
        while not self.done:
            with self.lock:
                socks = list(self.peers.values())
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"h")
            time.sleep(HEARTBEAT_SECONDS)

    def _listen(self, peer, sock):
        try:
            while True:
                data = sock.recv(64)
                if not data:
                    break
                if b"b" in data:
                    return  # the peer finished
                if b"i" in data:
                    self._fail(peer, f"process {peer} was interrupted (Ctrl-C)", status=130)
                if b"x" in data:  # process 0 says another process was lost
                    lost = data.split(b"x", 1)[1].split(b";")[0].decode() or "?"
                    self._fail(lost, f"process {lost} of the run was lost")
        except (OSError, ValueError):
            pass
        if not self.done:
            self._fail(peer, f"process {peer} ended without finishing (killed, crashed, or its machine "
                       "or network is gone)")

    def _fail(self, lost, why, status=1):
        with self.lock:
            if self.done:
                return
            self.done = True
            for sock in self.peers.values():
                with contextlib.suppress(OSError):
                    if self.index == 0:
                        sock.sendall(f"x{lost};".encode())
                    sock.close()
        _say_and_exit(f"error: process {self.index}: {why}: stopping; run the same commands again "
                      "to resume from the last checkpoint", status, then=self.lost.set)

    def finish(self):
        """Say goodbye: this process ends normally; stop watching the others."""
        self._close(b"b")

    def abandon(self, interrupted=False):
        """Close without goodbye, so the others stop at once: this process ends with an error
        (or was interrupted, which the others are told)."""
        self._close(b"i" if interrupted else b"")

    def _close(self, message):
        with self.lock:
            self.done = True
            for sock in self.peers.values():
                with contextlib.suppress(OSError):
                    if message:
                        sock.sendall(message)
                    sock.close()
