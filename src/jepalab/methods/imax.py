"""IMAX (Becker & Hinton, Nature 1992): neighbouring modules agree on what they both see.

Set-up, as in the paper's stereo experiment: a random-dot stereogram is a pair of 1-D
strips (left eye, right eye; see data/stereograms.py). A row of `modules` modules looks at
it; module k sees its own patch, pixels [k*P, (k+1)*P) of both strips (P = width /
modules), so neighbouring modules see neighbouring, non-overlapping patches. Each module
is a small multilayer perceptron with its own weights: 2P inputs, `hidden_layers` hidden
layers of `hidden` units (logistic in the paper; tanh here, the same family up to an
affine change), and one real-valued output.

Algorithm, per step:
  1. x = the batch's left and right strips, normalised as the probes see them;
  2. y_k = module_k(patch_k(x)) for every k, giving outputs (B, K);
  3. for every pair of adjacent modules (a, b) = (y_k, y_k+1), k = 0..K-2, the mutual
     information between their outputs, assuming each is the common signal plus
     independent Gaussian noise (the paper's Eq. 2):
         I = 0.5 * log( V(a + b) / V(a - b) ),
     V the variance over the batch (of every process, under torch.distributed);
  4. loss = -mean over the K-1 pairs of I (jepalab.losses.imax), minimised by gradient
     descent through every module.
What neighbouring patches share is the surface's depth: the disparity varies smoothly, so
it is nearly the same for adjacent modules, while the dots they see are independent. The
outputs agree best, relative to how much they vary, when each codes disparity.

The evaluation encoder (`eval_encoder()`) is the row of modules: `features(images)`
returns the K outputs (N, K) of float images (N, 3, 1, W) normalised like the batch's.
It needs no ViT: model.arch and model.patch_size are not used; data.image_size is the
strip width and must be a multiple of `modules`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from jepalab import losses
from jepalab.data.views import to_float
from jepalab.methods import StepOutput

EYES = 2  # channels 0 and 1 of a stereogram image; channel 2 is empty


@dataclass
class Config:
    modules: int = 10        # modules in the row; each sees width / modules pixels per eye
    hidden: int = 16         # hidden units per layer, per module
    hidden_layers: int = 2

    def validate(self) -> None:
        if self.modules < 2:
            raise ValueError(f"method.modules must be >= 2 (IMAX needs neighbours), got "
                             f"{self.modules}")
        if self.hidden < 1 or self.hidden_layers < 1:
            raise ValueError("method.hidden and method.hidden_layers must be >= 1, got "
                             f"{self.hidden}, {self.hidden_layers}")


class ModuleRow(nn.Module):
    """K independent MLPs side by side, one per patch, computed as batched matmuls.

    features(images (N, 3, 1, W) float) -> (N, K), one scalar output per module.
    """

    def __init__(self, modules: int, width: int, hidden: int, hidden_layers: int):
        super().__init__()
        if width % modules:
            raise ValueError(f"strip width (data.image_size) {width} must be a multiple of "
                             f"method.modules {modules}")
        self.modules_count, self.width = modules, width
        sizes = [EYES * width // modules] + [hidden] * hidden_layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's initialisation, per module
            self.weights.append(nn.Parameter(torch.empty(modules, fan_in, fan_out)
                                             .uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(modules, fan_out).uniform_(-bound, bound)))

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 1, W) -> (K, N, 2P): module k's left patch then its right patch."""
        n, width = images.shape[0], images.shape[-1]
        if images.shape[1:3] != (3, 1) or width != self.width:
            raise ValueError(f"expected stereogram images (N, 3, 1, {self.width}), got "
                             f"{tuple(images.shape)}")
        eyes = images[:, :EYES, 0, :].reshape(n, EYES, self.modules_count, -1)
        return eyes.permute(2, 0, 1, 3).reshape(self.modules_count, n, -1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        h = self.patches(images)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias[:, None, :], h, weight)
            if i < last:
                h = torch.tanh(h)
        return h[..., 0].T  # (N, K)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


class Method(nn.Module):
    def __init__(self, cfg: Config, spec, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = ModuleRow(cfg.modules, spec.image_size, cfg.hidden, cfg.hidden_layers)

    def forward(self, batch: dict) -> StepOutput:
        y = self.encoder.features(to_float(batch["images"]))
        loss = losses.imax(y[:, :-1], y[:, 1:])
        return StepOutput(loss, {"imax_nats": -loss.detach()})

    def on_step_end(self, progress: float) -> None:
        pass

    def eval_encoder(self) -> nn.Module:
        return self.encoder
