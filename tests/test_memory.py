"""The CLI's allocator setting: a planner's rollouts stop faulting their memory in anew."""
import platform
import subprocess
import sys

import pytest

PLAN = """
import resource, sys
import numpy as np
import torch
if sys.argv[1] == "kept":
    from jepalab.memory import keep_freed_memory
    assert keep_freed_memory()
from jepalab.build import build_method
from jepalab.config import load_config
from jepalab.world.evaluate import Agent, PlanSettings

torch.set_num_threads(1)
torch.manual_seed(0)
cfg = load_config("lewm-reacher", ["data.name=trajectories:unused.h5"])
model = build_method(cfg, 2 * cfg.data.frameskip).eval()  # history 3, LeWM's planner shape
frame = np.zeros((cfg.data.image_size, cfg.data.image_size, 3), dtype=np.uint8)
proprio = np.zeros(4, dtype=np.float32)
agent = Agent(model, PlanSettings(planner_options={"iterations": 3}), 2, cfg.data.frameskip)
torch.set_grad_enabled(False)
agent.reset({"goal": frame, "goal_proprio": proprio})
for _ in range(3):
    agent.observe({"pixels": frame, "proprio": proprio}, agent.block(torch.zeros(2)))
agent.plan()
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    agent.plan()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[2])  # the median plan's
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_kept_memory_takes_no_page_faults_in_a_plan():
    faults = {}
    for mode in ("glibc", "kept"):  # fresh processes: nothing else has moved the thresholds
        done = subprocess.run([sys.executable, "-c", PLAN, mode], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        faults[mode] = int(done.stdout.split()[-1])
    # glibc's default faults in thousands of pages a plan (a few-MiB tensor freed at the top
    # of the heap goes back to the kernel); kept, the same plan takes next to none. The
    # median plan: kept, an odd plan faults 113 or 338 pages once (1 in 6 plans on 2026-12-07,
    # which put the mean of two plans over the bound in CI), every other plan none
    assert faults["glibc"] > 2000, faults
    assert faults["kept"] < faults["glibc"] / 20, faults
