"""Several machines (issue 33): a machine that never comes. `--num_machines 2` with one machine started used to wait
silently for torch's default timeouts; the processes now say what they join and give up after `--nccl_timeout`, and
the launcher after `--rdzv_conf timeout` (the SLURM script sets both)."""

import socket
import subprocess
import sys
import time

import pytest

from ..conftest import REPO, load_script
from .conftest import CLEAR, pdae_flags, train_command, train_env

pytestmark = pytest.mark.reliability(area="training")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@CLEAR
@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_an_unusable_nccl_timeout_is_refused_at_parse_time(tiny_dpm, tmp_path, capsys, value):
    """`train_pdae.py --nccl_timeout {value}`: argparse's exit 2 naming the flag."""
    with pytest.raises(SystemExit) as exit_info:
        load_script("train_pdae").parse_args(pdae_flags(tiny_dpm, tmp_path / "out", f"--nccl_timeout={value}"))
    assert exit_info.value.code == 2 and "--nccl_timeout" in capsys.readouterr().err


@pytest.mark.slow
@CLEAR
def test_a_process_whose_peers_never_come_says_what_it_waits_for_and_gives_up_after_nccl_timeout(tiny_dpm, tmp_path):
    """train_pdae.py started as process 0 of 2 on 2 machines (as a launcher starts it) whose other process never
    comes, with --nccl_timeout 5: it says what it joins, then ends within seconds with a TimeoutError naming
    --nccl_timeout and the main address (before: it waited torch's 30 minutes, silently)."""
    port = free_port()
    env = {**train_env(tmp_path), "ACCELERATE_USE_CPU": "true", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
           "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    started = time.monotonic()
    run = subprocess.run(train_command("train_pdae.py", pdae_flags(tiny_dpm, tmp_path / "out", "--nccl_timeout", "5")),
                         env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    seconds = time.monotonic() - started
    assert run.returncode != 0 and seconds < 120, f"exit {run.returncode} after {seconds:.0f} s"
    joining = f"Joining a process group of 2 processes on 2 machine(s), the main one at 127.0.0.1:{port}"
    assert joining in run.stderr and "waiting up to 5 s (--nccl_timeout)" in run.stderr, run.stderr[-2000:]
    assert "TimeoutError: The process group of 2 processes" in run.stderr
    assert "did not form within --nccl_timeout 5 s" in run.stderr


@pytest.mark.slow
@CLEAR
def test_the_main_machine_alone_gives_up_after_the_launchers_rendezvous_timeout(tiny_dpm, tmp_path):
    """`accelerate launch --num_machines 2 --machine_rank 0 --rdzv_conf timeout=10 train_pdae.py` with the other
    machine never started (the SLURM script's launcher flags): the launcher ends within seconds saying how many
    machines joined (1/2), instead of waiting torch's default 600 s."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
               "--machine_rank", "0", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
               "--num_processes", "2", "--rdzv_conf", "timeout=10", str(REPO / "examples" / "train_pdae.py"),
               *pdae_flags(tiny_dpm, tmp_path / "out")]  # fmt: skip
    started = time.monotonic()
    env = {**train_env(tmp_path), "ACCELERATE_USE_CPU": "true"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    seconds = time.monotonic() - started
    assert run.returncode != 0 and seconds < 120, f"exit {run.returncode} after {seconds:.0f} s"
    assert "waiting for clients. 1/2 clients joined" in run.stderr, run.stderr[-2000:]
