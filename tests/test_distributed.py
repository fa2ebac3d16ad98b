"""Two CPU processes (gloo): the quantizer's EMA statistics and restarts stay identical on both."""

import os
import socket

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
