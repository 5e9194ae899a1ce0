"""Start a training command and kill -9 it once its run directory holds a given checkpoint."""

import signal
import subprocess
import time

from bnn import runs


def kill_after_checkpoint(cmd, env, run_dir, epoch=1, timeout=180):
    """Run ``cmd``; SIGKILL it as soon as checkpoint ``epoch`` (or a later one) exists.

    Returns
    -------
    int
        The epoch of the newest complete checkpoint left behind.
    """
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not runs.checkpoints(run_dir) or runs.checkpoints(run_dir)[-1][0] < epoch:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return runs.checkpoints(run_dir)[-1][0]
