import math

import pytest
import torch

from tg_samplenet.nn.soft_projection import SoftProjection
from tg_samplenet.temperature import TemperatureSchedule


def test_linear_rectified_profile():
    profile = TemperatureSchedule("linear", start=1.0, end=0.1, num_epochs=10)
    values = [profile.sigma(epoch) for epoch in range(15)]
    assert values[0] == pytest.approx(1.0)
    assert values[5] == pytest.approx(0.55)  # half-way between start and end
    steps = [a - b for a, b in zip(values[:10], values[1:11], strict=True)]
    assert steps == pytest.approx([0.09] * 10)  # a straight line down to the end value
    assert values[10:] == pytest.approx([0.1] * 5)  # then rectified


def test_exponential_profile():
    profile = TemperatureSchedule("exponential", start=1.0, end=1e-3, num_epochs=6)
    values = [profile.sigma(epoch) for epoch in range(10)]
    assert values[0] == pytest.approx(1.0)
    assert values[3] == pytest.approx(math.sqrt(1e-3))  # geometric mean at mid-way
    ratios = [b / a for a, b in zip(values[:6], values[1:7], strict=True)]
    assert ratios == pytest.approx([1e-3 ** (1 / 6)] * 6)  # a constant decay factor
    assert values[6:] == pytest.approx([1e-3] * 4)


def test_constant_profile():
    profile = TemperatureSchedule("constant", start=0.3)
    assert [profile.sigma(epoch) for epoch in (0, 1, 50, 500)] == [0.3] * 4


@pytest.mark.parametrize("kind", ["linear", "exponential", "constant"])
def test_fixed_profiles_set_the_projection(kind):
    profile = TemperatureSchedule(kind, start=0.5, end=0.01, num_epochs=4)
    proj = SoftProjection(min_sigma=1e-4)
    for epoch in range(6):
        profile.apply(proj, epoch)
        assert proj.sigma.item() == pytest.approx(profile.sigma(epoch))
        assert not proj.temperature.requires_grad  # lambda = 0: the optimiser leaves t


def test_learned_profile_leaves_the_temperature_alone():
    profile = TemperatureSchedule("learned")
    assert profile.learned and profile.sigma(3) is None
    proj = SoftProjection(initial_temperature=0.7)
    with torch.no_grad():
        proj.temperature.mul_(0.5)
    profile.apply(proj, 10)
    assert proj.temperature.item() == pytest.approx(0.35)
    assert proj.temperature.requires_grad


def test_bad_profiles_are_rejected():
    with pytest.raises(ValueError, match="Unknown temperature schedule 'cosine'"):
        TemperatureSchedule("cosine")
    with pytest.raises(ValueError, match="start and end must be positive"):
        TemperatureSchedule("linear", start=0.0)
    with pytest.raises(ValueError, match="num_epochs must be at least 1"):
        TemperatureSchedule("linear", num_epochs=0)


def test_repr():
    assert repr(TemperatureSchedule("learned")) == "TemperatureSchedule('learned')"
    profile = TemperatureSchedule("linear", start=1.0, end=0.001, num_epochs=50)
    assert repr(profile) == "TemperatureSchedule('linear', start=1.0, end=0.001, num_epochs=50)"
