import pytest
import torch

from jepalab import losses


def test_jepa_latent_smooth_l1_by_hand():
    prediction = torch.tensor([[0.0, 2.0], [0.5, -0.5]])
    target = torch.zeros(2, 2)
    # Huber, beta 1: |d| < 1 -> d^2 / 2, else |d| - 1/2: 0, 1.5, 0.125, 0.125 -> mean 0.4375
    assert losses.jepa_latent(prediction, target).item() == pytest.approx(0.4375)


def test_jepa_latent_l2_by_hand():
    prediction = torch.tensor([[1.0, 3.0], [0.5, -0.5]])
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # squared differences 0, 4, 0.25, 0.25 -> mean 1.125
    assert losses.jepa_latent(prediction, target, kind="l2").item() == pytest.approx(1.125)


def test_jepa_latent_gradient_reaches_prediction_only_when_target_detached():
    prediction = torch.randn(3, 4, 5, requires_grad=True)
    target = torch.randn(3, 4, 5)
    losses.jepa_latent(prediction, target).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


def test_jepa_latent_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        losses.jepa_latent(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="kind must be one of"):
        losses.jepa_latent(torch.zeros(2, 3), torch.zeros(2, 3), kind="l3")
