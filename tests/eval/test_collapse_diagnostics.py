"""The collapse diagnostics run on one process's embeddings with no collective."""
import datetime
import os

import torch
import torch.multiprocessing as mp

from jepalab.eval.collapse import health


def _one_rank_diagnoses(rank, group, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=group, rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=20))
    try:
        if rank == 0:  # a diagnostic on rank 0 alone: a collective inside it would pair with
            values = health(torch.randn(64, 16))  # rank 1's barrier, or wait for it forever
            torch.save(values, os.path.join(out_dir, "health.pt"))
        dist.barrier()
        flag = torch.tensor([rank + 1.0])
        dist.all_reduce(flag)  # the ranks still pair their collectives one to one
        torch.save(flag, os.path.join(out_dir, f"flag{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_health_on_one_rank_issues_no_collective(tmp_path, group):
    mp.start_processes(_one_rank_diagnoses, args=(group, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    values = torch.load(tmp_path / "health.pt")
    single = health(torch.randn(64, 16))
    assert values.keys() == single.keys() and 0 < values["sigreg"] < 10
    assert [torch.load(tmp_path / f"flag{r}.pt").item() for r in range(2)] == [3.0, 3.0]
