"""Two machines training together: two `accelerate launch --num_machines 2 --machine_rank 0|1` commands on this host
(gloo on the CPU), as a cluster user runs one per node (docs/training.md, "Several machines")."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from ..conftest import REPO
from .test_streaming import assert_each_image_once_per_pass, rank_reports, streaming_flags, write_shards
from .test_train_scripts import TRAIN_PDAE, launch_command, offline_env

# Stands in for huggingface_hub.HfApi in each launched process and records who called it, and what.
FAKE_HUB = """
import json, os
import huggingface_hub


class FakeHfApi:
    def __init__(self, token=None):
        pass

    def _record(self, call):
        rank = os.environ.get("RANK", "?")
        with open(os.path.join(os.environ["PDAE_FAKE_HUB_DIR"], f"calls-{rank}.jsonl"), "a") as f:
            f.write(json.dumps({"rank": rank, "call": call}) + "\\n")

    def create_repo(self, repo_id, exist_ok, private):
        self._record("create_repo")
        return type("Repo", (), {"repo_id": f"someone/{repo_id}"})()

    def upload_folder(self, **kwargs):
        self._record("upload_folder")


if os.environ.get("PDAE_FAKE_HUB_DIR"):
    huggingface_hub.HfApi = FakeHfApi
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_command(args: list[str], machine_rank: int, port: int) -> list[str]:
    """`accelerate launch` of train_pdae.py as machine `machine_rank` of two, one process each."""
    command = launch_command(TRAIN_PDAE, args, num_processes=2)
    at = command.index("--multi_gpu") + 1
    machine = ["--num_machines", "2", "--machine_rank", str(machine_rank), "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(port)]  # fmt: skip
    return command[:at] + machine + command[at:]


@pytest.mark.slow  # two machines of one process each, streaming, checkpoints and a (faked) push
def test_two_machines_train_together_and_only_the_main_one_writes_and_pushes(tiny_dpm, tmp_path):
    shards = write_shards(tmp_path / "shards")
    hub_dir, site = tmp_path / "hub-calls", tmp_path / "site"
    hub_dir.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_HUB)
    # The fake Hub's folder first, then this checkout's library (as tests/reliability's train_env puts it first).
    path = os.pathsep.join(filter(None, [str(site), str(REPO), os.environ.get("PYTHONPATH")]))
    env = offline_env({"ACCELERATE_USE_CPU": "true", "PDAE_FAKE_HUB_DIR": str(hub_dir), "PYTHONPATH": path})
    out = tmp_path / "run"  # one folder both machines see, as a cluster's shared file system
    args = [*streaming_flags(tiny_dpm, shards, max_train_steps=4, checkpointing_steps=2), "--output_dir", str(out),
            "--push_to_hub"]  # fmt: skip
    port = free_port()
    machines = [
        subprocess.Popen(
            machine_command(args, rank, port), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )  # fmt: skip
        for rank in (0, 1)
    ]
    logs = [machine.communicate(timeout=900)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], logs[0][-3000:] + logs[1][-3000:]

    reports = rank_reports(out, 2)
    assert [(r["process_index"], r["num_processes"], r["distributed_type"]) for r in reports] == [
        (0, 2, "MULTI_CPU"), (1, 2, "MULTI_CPU"),
    ]  # fmt: skip
    assert reports[0]["weights_checksum"] == reports[1]["weights_checksum"]
    assert_each_image_once_per_pass(reports)
    assert (out / "checkpoint-4" / "stream_state_1.json").is_file() and (out / "model_index.json").is_file()
    # The main machine alone saves the checkpoint folders, the pipeline and the card, and talks to the Hub.
    for line in ("Saved state to", "Saved PDAEPipeline to"):
        assert line in logs[0] and line not in logs[1], line
    calls = [json.loads(line) for path in sorted(hub_dir.iterdir()) for line in path.read_text().splitlines()]
    assert [(call["rank"], call["call"]) for call in calls] == [("0", "create_repo"), ("0", "upload_folder")]


def test_the_documented_multi_node_config_loads_with_accelerates_loader(tmp_path):
    path = REPO / "docs" / "configs" / "accelerate-multi-node.yaml"
    config = load_config_from_file(str(path))
    assert (config.num_machines, config.num_processes, config.distributed_type.value) == (2, 16, "MULTI_GPU")
    assert config.main_training_function == "main" and config.rdzv_backend == "static"
    overrides = yaml.safe_load(path.read_text())
    assert overrides["machine_rank"] == 0  # each node sets its own with --machine_rank
    script = (REPO / "docs" / "configs" / "slurm-multi-node.sh").read_text()
    for needed in ("--machine_rank $SLURM_NODEID", "--num_machines $SLURM_NNODES", "--config_file", "srun",
                   "--rdzv_conf timeout=$RDZV_TIMEOUT", "--nccl_timeout $NCCL_TIMEOUT"):  # fmt: skip
        assert needed in script, needed
    # No cluster here: the script is checked for its syntax only.
    assert subprocess.run(["bash", "-n", str(REPO / "docs" / "configs" / "slurm-multi-node.sh")]).returncode == 0
