"""experiments/conv_floor.py: the convolutions of a train step and their timing."""

import jax
import pytest
from conftest import load_experiment


def _module():
    return load_experiment("conv_floor")


def _all_eqns(jaxpr):
    """Every equation of a jaxpr and of every jaxpr nested in it."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for v in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(v, jax.extend.core.ClosedJaxpr):
                    yield from _all_eqns(v.jaxpr)
                elif isinstance(v, jax.extend.core.Jaxpr):
                    yield from _all_eqns(v)


def _count_convs(jaxpr) -> int:
    """Convolutions in a jaxpr and every jaxpr nested in it."""
    return sum(e.primitive.name == "conv_general_dilated" for e in _all_eqns(jaxpr))


@pytest.mark.parametrize("encoder", ["none", "oe"])
def test_row_convs_are_every_convolution_the_gradient_computes(encoder):
    from vdm_vae.train_step import AXIS

    cf = _module()
    convs = cf.row_convs("mvdm", encoder, batch=2, smoke=True)
    loss, params, images, rng = cf.row_loss("mvdm", encoder, batch=2, smoke=True)
    grad = jax.make_jaxpr(jax.grad(loss), axis_env=[(AXIS, 1)])(params, images, rng)
    # the gradient's program holds the forward convolutions and, for each, the kernel
    # gradient and (where its input depends on the parameters) the input gradient
    assert sum(c["count"] * len(c["directions"]) for c in convs) == _count_convs(grad.jaxpr)
    data_convs = [c for c in convs if "input_gradient" not in c["directions"]]
    # the encoder's first convolution reads x, which no parameter changes
    # and the U-Net's reads z_t, which the fixed noise schedule makes from x and noise alone
    assert sum(c["count"] for c in data_convs) == (encoder == "oe") + 1
    assert all(c["input"][-1] == 1 for c in data_convs)


def test_each_library_times_every_direction_it_is_asked_for():
    cf = _module()
    conv = {"input": [2, 6, 6, 3], "kernel": [3, 3, 3, 4], "strides": [1, 1],
            "padding": [[1, 1], [1, 1]], "directions": ["forward", "kernel_gradient"]}
    seconds = cf.jax_seconds(conv, repeats=2)
    assert set(seconds) == {"forward", "kernel_gradient"}
    assert all(0 < s < 1 for s in seconds.values())
    pytest.importorskip("torch")
    strided = dict(conv, strides=[2, 2], padding=[[0, 1], [0, 1]],
                   directions=["forward", "input_gradient", "kernel_gradient"])
    seconds = cf.torch_seconds(strided, repeats=2)
    assert set(seconds) == {"forward", "input_gradient", "kernel_gradient"}
    assert all(0 < s < 1 for s in seconds.values())


def test_the_step_without_convolutions_keeps_the_rest_of_the_step():
    from vdm_vae.train_step import AXIS

    cf, rest = _module(), load_experiment("step_without_convs")
    loss, params, images, rng = cf.row_loss("mvdm", "oe", batch=2, smoke=True)
    real = jax.make_jaxpr(jax.grad(loss), axis_env=[(AXIS, 1)])(params, images, rng)
    with rest.without_convolutions():
        stood_in = jax.make_jaxpr(jax.grad(loss), axis_env=[(AXIS, 1)])(params, images, rng)
    assert _count_convs(real.jaxpr) > 0 and _count_convs(stood_in.jaxpr) == 0
    restored = jax.make_jaxpr(jax.grad(loss), axis_env=[(AXIS, 1)])(params, images, rng)
    assert _count_convs(restored.jaxpr) == _count_convs(real.jaxpr)  # the real one is back
    # the same gradient shapes, and every other operation of the step is still there
    assert [v.aval.shape for v in stood_in.jaxpr.outvars] == [
        v.aval.shape for v in real.jaxpr.outvars]
    kinds = {"dot_general", "rsqrt", "logistic", "exp"}
    assert kinds <= {e.primitive.name for e in _all_eqns(stood_in.jaxpr)}


def test_the_step_without_convolutions_is_timed():
    rest = load_experiment("step_without_convs")
    row = rest.time_rest("mvdm", "none", repeats=2, batch=2, smoke=True)
    assert row["substeps"] >= 1 and 0 < row["rest_step_min_s"] <= row["rest_step_median_s"] < 5
