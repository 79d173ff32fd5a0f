"""layer_statistics on the zoo agrees with Flax's own capture and with plain jax.grad, and
names what it cannot record (layers inside nn.scan / nn.RNN) instead of crashing."""

import numpy as np
import pytest

import jinit
from tests.zoo.measure import layer_outputs, mean_loss_grads
from tests.zoo.models import NAMES as ALL_NAMES

NAMES = [n for n in ALL_NAMES if n != "plain_jax"]


@pytest.mark.parametrize("name", NAMES)
def test_output_std_matches_flax_capture(zoo, zoo_stats, name):
    stats, _ = zoo_stats[name]
    outputs = layer_outputs(zoo[name])
    recorded = [p for p in jinit.layer_order(stats) if f"output/{p}/std" in stats]
    common = [p for p in recorded if p in outputs]
    assert len(common) >= 2, (recorded, sorted(outputs))
    for path in common:
        y = outputs[path].astype(np.float64)
        np.testing.assert_allclose(stats[f"output/{path}/std"], y.std(), rtol=2e-3, atol=1e-6)
        np.testing.assert_allclose(stats[f"output/{path}/mean"], y.mean(), rtol=2e-3, atol=1e-5)
        dead = np.all(y.reshape(-1, y.shape[-1]) == 0, axis=0).mean()
        assert stats[f"output/{path}/dead_frac"] == pytest.approx(dead)


@pytest.mark.parametrize("name", NAMES)
def test_param_grads_match_jax_grad(zoo, zoo_stats, name):
    stats, _ = zoo_stats[name]
    grads = mean_loss_grads(zoo[name])
    assert grads
    for path, g in grads.items():
        np.testing.assert_allclose(
            stats[f"param_grad/{path}/norm"],
            np.linalg.norm(g.astype(np.float64)),
            rtol=2e-3,
            atol=1e-7,
        )


@pytest.mark.parametrize(
    "name,inner",
    [("lstm", "LSTMCell_0"), ("gru", "GRUCell_0"), ("scan_mlp", "ScanScanBlock_0/Dense_0")],
)
def test_layers_inside_scan_are_named_in_a_warning(zoo_stats, name, inner):
    stats, messages = zoo_stats[name]
    assert any(inner in m and "lifted transform" in m for m in messages), messages
    assert not any(k.startswith(f"output/{inner}/") for k in stats)


def test_remat_blocks_are_recorded(zoo_stats):
    stats, messages = zoo_stats["remat_mlp"]
    assert messages == []
    assert jinit.layer_order(stats, leaves_only=True) == [
        "CheckpointMLPBlock_0/Dense_0",
        "CheckpointMLPBlock_1/Dense_0",
        "CheckpointMLPBlock_2/Dense_0",
        "Dense_0",
    ]


def test_plain_jax_records_nothing_and_says_so(zoo):
    case = zoo["plain_jax"]
    with pytest.raises(ValueError, match="recorded no layer"):
        jinit.layer_statistics(case.model, case.variables, case.x)


def test_eval_batchnorm_without_batch_stats_raises(zoo):
    case = zoo["resnet_bn_eval"]
    with pytest.raises(ValueError, match="BatchNorm_0.*batch_stats"):
        jinit.layer_statistics(
            case.model, {"params": case.variables["params"]}, case.x, apply_kwargs={"train": False}
        )


def test_empty_batch_raises(zoo):
    case = zoo["conv1d"]
    with pytest.raises(ValueError, match=r"layer_statistics: the batch is empty .*shape \(0,"):
        jinit.layer_statistics(case.model, case.variables, case.x[:0])
