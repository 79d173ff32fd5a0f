"""diagnose on the zoo: nothing on the healthy models (the BatchNorm ResNet in train mode
included, even on raw 0..255 pixels), a finding on the broken one."""

import jax
import pytest

import jinit
from tests.zoo.models import NAMES, UNHEALTHY

HEALTHY = [n for n in NAMES if n not in UNHEALTHY and n != "plain_jax"]


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_models_have_no_finding(zoo_stats, name):
    stats, _ = zoo_stats[name]
    assert jinit.diagnose(stats) == []


def test_broken_model_is_flagged(zoo_stats):
    stats, _ = zoo_stats["mlp_tiny_init"]
    findings = jinit.diagnose(stats)
    kinds = [f.kind for f in findings]
    assert "vanishing_gradient" in kinds and "vanishing_activation" in kinds
    assert findings[0].value < 1e-10  # 6 layers, each 1000x too small


def test_batchnorm_resnet_train_mode_on_raw_pixels(zoo):
    """Conv_0 sees 0..255 pixels (output std ~1e2) and BatchNorm_0 removes that scale: the
    ratios skip layers that feed a normalizing layer, so this healthy net gets no finding."""
    case = zoo["resnet_bn_train"]
    x = jax.random.uniform(jax.random.key(3), case.x.shape) * 255.0
    stats = jax.jit(
        lambda p, b: jinit.layer_statistics(case.model, p, b, apply_kwargs=case.apply_kwargs)
    )(case.variables, x)
    assert float(stats["output/Conv_0/std"]) > 50.0  # precondition: the raw scale
    assert int(stats["output/BatchNorm_0/normalizes"]) == 1
    assert jinit.diagnose(stats) == []


def test_empty_stats_are_not_healthy():
    with pytest.raises(ValueError, match="no recorded layer"):
        jinit.diagnose({"summary/loss/value": 0.0})
