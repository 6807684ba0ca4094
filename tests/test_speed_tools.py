"""experiments/profile_step.py (HLO kinds, per-operation times) and attention_speed.py."""

import jax
import jax.numpy as jnp
import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def profile_step():
    return load_experiment("profile_step")


def _compiled(fn, *args):
    return jax.jit(fn).lower(*args).compile()


def test_hlo_kinds_names_products_reductions_and_convolutions(profile_step):
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))

    def fn(x, w, m):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.tanh(y), axis=(1, 2)) @ m

    kinds = profile_step.hlo_kinds(_compiled(fn, x, w, jnp.ones((4, 5))).as_text())
    found = {kind for kind, _ in kinds.values()}
    assert {"convolution", "matrix product", "reduction"} <= found
    assert found <= set(profile_step.KINDS)


def test_op_times_come_from_the_xla_threads_of_a_profile(profile_step, tmp_path):
    compiled = _compiled(lambda a, b: jnp.tanh(a @ b).sum(axis=0), jnp.ones((256, 256)),
                         jnp.ones((256, 256)))
    args = (jnp.ones((256, 256)), jnp.ones((256, 256)))
    jax.block_until_ready(compiled(*args))
    jax.profiler.start_trace(str(tmp_path))
    for _ in range(3):
        jax.block_until_ready(compiled(*args))
    jax.profiler.stop_trace()
    path = next(tmp_path.rglob("*.xplane.pb"))
    totals = profile_step.op_times(str(path))
    kinds = profile_step.hlo_kinds(compiled.as_text())
    assert totals and all(ns >= 0 for ns in totals.values())
    assert any(kinds.get(name, ("other",))[0] == "matrix product" for name in totals)
    assert not any("wait for completion" in name for name in totals)


def test_report_lists_kinds_and_top_operations(profile_step):
    result = {"row": "mvdm+oe", "batch": 64, "cpu": "cpu", "cores": 2, "wall_s_per_step": 1.0,
              "op_s_per_step": 0.5,
              "kinds_s_per_step": dict.fromkeys(profile_step.KINDS, 0.1),
              "top": [{"op": "fusion.1", "kind": "elementwise", "shape": "f32[4]",
                       "s_per_step": 0.25}]}
    text = profile_step.report(result)
    assert "1.000 s per step" in text and "fusion.1" in text and "20.0%" in text


def test_attention_speed_reports_a_row_per_impl_and_channel_count():
    attention_speed = load_experiment("attention_speed")
    out = attention_speed.report(attention_speed.parse_args(
        ["--batch=2", "--positions=16", "--channels=4,8", "--repeats=1"]))
    for impl in ("vdm_vae batched", "vdm_vae per_example"):
        rows = [line.split() for line in out.splitlines() if line.startswith(impl)]
        assert [row[2] for row in rows] == ["4", "8"]
        assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)
    with pytest.raises(SystemExit):
        attention_speed.parse_args(["--channels=4,x"])
