"""What the environments share: the angle wrap every success test and planner cost uses."""
import math

import numpy as np
import torch

from jepalab.envs.base import wrap_angle


def test_an_angle_wraps_the_short_way_round_whatever_holds_it():
    angles = [0.0, 3.5, -3.5, 2 * math.pi + 0.25, -math.pi]
    expected = [0.0, 3.5 - 2 * math.pi, 2 * math.pi - 3.5, 0.25, -math.pi]
    for angle, want in zip(angles, expected, strict=True):
        assert math.isclose(wrap_angle(angle), want, abs_tol=1e-12), (angle, want)
    assert np.allclose(wrap_angle(np.array(angles)), expected)
    tensor = torch.tensor(angles, requires_grad=True)       # a learned model's angle error
    wrapped = wrap_angle(tensor)
    assert isinstance(wrapped, torch.Tensor) and torch.allclose(
        wrapped, torch.tensor(expected), atol=1e-6)
    wrapped.sum().backward()                                 # the wrap keeps the graph
    assert torch.equal(tensor.grad, torch.ones(len(angles)))
