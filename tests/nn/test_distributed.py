"""Two CPU processes (gloo): the quantizer's EMA statistics and restarts stay identical on both."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brainvq.nn.quantizer import VectorQuantizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)  # same initial codebook on both ranks
    q = VectorQuantizer(16, 4, decay=0.9, dead_code_threshold=2.0, kmeans_init=True)
    q.train()
    torch.manual_seed(100 + rank)  # but different data on each rank
    for _ in range(5):
        q(torch.randn(2, 4, 6, 6) * (rank + 1))
    plain = VectorQuantizer(16, 4, decay=0.9, dead_code_threshold=0.0)
    plain.train()
    for _ in range(5):
        plain(torch.randn(2, 4, 6, 6))
    state = {k: v.clone() for k, v in q.state_dict().items()}
    state["plain_cluster_size"] = plain.cluster_size.clone()
    torch.save(state, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_keep_identical_codebooks(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the usage statistics count both ranks' vectors: 2 ranks x 72 per step, from 16 x 1.0
    expected = 16 * 0.9**5 + 2 * 72 * (1 - 0.9**5)
    assert abs(float(a["plain_cluster_size"].sum()) - expected) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "key"), [("dcgan", "generator"), ("transformer", "net.")])
def test_two_process_ddp_run_keeps_ranks_identical(keras_root, tmp_path, kind, key):
    """`brainvq run --train.devices 2` on CPU (gloo): both stages train on 2 processes, every rank
    ends with the same weights and codebook, and only rank 0 reports, samples and evaluates."""
    from safetensors.torch import load_file

    from ..conftest import brainvq, tiny

    run = tmp_path / "run"
    r = brainvq(
        *tiny("run", keras_root, run),
        "--train.max_epochs",
        "2",
        "--train.devices",
        "2",
        "--train.accelerator",
        "cpu",
        "--train.save_rank_states",
        "true",
        "--kind",
        kind,
        subprocess_=True,  # Lightning starts the second rank by running this command again
    )
    assert r.stdout.count("VQ-VAE trained") == 1 and r.stdout.count("prior trained") == 1
    assert r.stdout.count("report ->") == 1
    for stage, part in (("vqvae", "quantizer.embedding"), (f"prior-{kind}", key)):
        a = load_file(run / "state" / stage / "rank0.safetensors")
        b = load_file(run / "state" / stage / "rank1.safetensors")
        assert a.keys() == b.keys() and any(part in k for k in a), stage
        for k in a:
            assert torch.equal(a[k], b[k]), (stage, k)
    assert (run / "report.html").exists()
