"""The convolutions of one train step of the study's grid, each timed alone in each direction.

    python experiments/conv_floor.py --size mvdm --encoder oe --library jax
    python experiments/conv_floor.py --size mvdm --encoder oe --library torch

Lists the forward convolutions of vdm_vae's train step for the row (size x encoder, batch 64,
28x28x1) from the jaxpr of its loss, with the directions the step computes for each: the
forward pass, the kernel gradient, and the input gradient where the convolution's input
depends on the parameters (not on the encoder's convolution of the data x). Then times each
distinct convolution alone in each of its directions, best of --repeats calls, in XLA (with
vdm_vae's CPU settings, vdm_vae/cpu_env.py) or in PyTorch (the study's library, on the same
cores), and prints one JSON line: every distinct convolution with its count in the step, its
FLOPs per direction and its seconds per direction.

experiments/side_by_side.py puts the two libraries' lines together: the row's convolutions,
each direction at the faster library's time, is the time of the step's convolutions alone
that no program built on either library's kernels beats.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRECTIONS = ("forward", "input_gradient", "kernel_gradient")
CALIBRATION = {"input": [64, 28, 28, 64], "kernel": [3, 3, 64, 64], "strides": [1, 1],
               "padding": [[1, 1], [1, 1]], "directions": list(DIRECTIONS)}


def _sub_jaxprs(params: dict):
    """The jaxprs nested in an equation's params (pjit, custom_jvp/vjp calls, scans, ...)."""
    import jax

    for value in params.values():
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            if isinstance(v, jax.extend.core.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jax.extend.core.Jaxpr):
                yield v


def _walk(jaxpr, depends: list, found: list):
    """Appends (conv equation, whether its input depends on the parameters) to `found`.

    depends[i]: whether jaxpr's i-th input depends on the parameters. An equation's outputs
    depend on them when any of its inputs does.
    """
    import jax

    flag = {v: d for v, d in zip(jaxpr.invars, depends)}
    for v in jaxpr.constvars:
        flag[v] = False

    def dep(v):
        return not isinstance(v, jax.extend.core.Literal) and flag.get(v, False)

    for eqn in jaxpr.eqns:
        ins = [dep(v) for v in eqn.invars]
        if eqn.primitive.name == "conv_general_dilated":
            found.append((eqn, ins[0]))
        for sub in _sub_jaxprs(eqn.params):
            inner = ins if len(sub.invars) == len(ins) else [any(ins)] * len(sub.invars)
            _walk(sub, inner, found)
        for v in eqn.outvars:
            flag[v] = any(ins)


def _signature(eqn) -> dict:
    """The convolution's shapes and window, in NHWC / HWIO terms."""
    p = eqn.params
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    dn = p["dimension_numbers"]
    if (p["feature_group_count"] != 1 or p["batch_group_count"] != 1
            or set(p["lhs_dilation"]) != {1} or set(p["rhs_dilation"]) != {1}):
        raise SystemExit(f"conv_floor times plain convolutions only, got {p}")
    n, c, *spatial_in = (lhs[i] for i in dn.lhs_spec)
    o, i, *window = (rhs[j] for j in dn.rhs_spec)
    _, _, *spatial_out = (eqn.outvars[0].aval.shape[k] for k in dn.out_spec)
    return {"input": [n, *spatial_in, c], "kernel": [*window, i, o],
            "strides": list(p["window_strides"]), "padding": [list(q) for q in p["padding"]],
            "output_hw": spatial_out}


def row_loss(size: str, encoder: str, batch: int = 64, smoke: bool = False):
    """(loss(params, images, rng), params, images, rng) of the row's train step; the loss
    reads the device axis of the pmapped step, so trace it with axis_env=[(AXIS, 1)]."""
    import jax
    import numpy as np

    from vdm_vae import bench
    from vdm_vae.train_step import create_train_state, loss_and_metrics, make_optimizer

    args = argparse.Namespace(smoke=smoke, batch=batch)
    model_config, config = bench._configs(size, encoder, "float32", args)
    tx = make_optimizer(config.optimizer, config.training.num_steps_train)
    params = create_train_state(model_config, tx, jax.random.PRNGKey(0)).params
    images = np.zeros((batch,) + model_config.image_shape, np.uint8)

    def loss(params, images, rng):
        return loss_and_metrics(params, images, rng, config=model_config,
                                beta=np.float32(1.0), train=True)[0]

    return loss, params, images, jax.random.PRNGKey(0)


def row_convs(size: str, encoder: str, batch: int = 64, smoke: bool = False) -> list:
    """The distinct forward convolutions of the row's train step, each with its count, its
    FLOPs per direction and the directions the step computes."""
    import jax

    from vdm_vae.train_step import AXIS

    loss, params, images, rng = row_loss(size, encoder, batch, smoke)
    closed = jax.make_jaxpr(loss, axis_env=[(AXIS, 1)])(params, images, rng)
    n_params = len(jax.tree_util.tree_leaves(params))
    depends = [i < n_params for i in range(len(closed.jaxpr.invars))]
    found = []
    _walk(closed.jaxpr, depends, found)
    rows = {}
    for eqn, input_depends in found:
        sig = _signature(eqn)
        key = json.dumps([sig, input_depends])
        if key not in rows:
            n, *_, c = sig["input"]
            kh, kw, _, o = sig["kernel"]
            ho, wo = sig["output_hw"]
            directions = ["forward", "kernel_gradient"] + (["input_gradient"] * input_depends)
            rows[key] = dict(sig, count=0, gflop=2 * n * ho * wo * kh * kw * c * o / 1e9,
                             directions=sorted(directions, key=DIRECTIONS.index))
        rows[key]["count"] += 1
    return list(rows.values())


def best_seconds(fn, repeats: int = 8, warm_s: float = 0.0) -> float:
    """Fastest of `repeats` calls of fn, after one warm-up call and, with warm_s, calls for
    warm_s seconds (as a train step's loop has, where a fresh program's first calls are
    slower)."""
    from vdm_vae.bench import timed

    fn()
    start = time.perf_counter()
    while time.perf_counter() - start < warm_s:
        fn()
    return min(timed(fn, repeats))


def jax_seconds(conv: dict, repeats: int, warm_s: float = 0.5) -> dict:
    """Seconds of each direction of one convolution in XLA (best_seconds)."""
    import jax

    x = jax.random.normal(jax.random.PRNGKey(1), conv["input"])
    k = jax.random.normal(jax.random.PRNGKey(2), conv["kernel"])
    padding = [tuple(q) for q in conv["padding"]]

    def f(x, k):
        return jax.lax.conv_general_dilated(x, k, conv["strides"], padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    g = jax.numpy.ones(jax.eval_shape(f, x, k).shape)
    calls = {"forward": (jax.jit(f), (x, k)),
             "input_gradient": (jax.jit(lambda x, k, g: jax.vjp(lambda x: f(x, k), x)[1](g)[0]),
                                (x, k, g)),
             "kernel_gradient": (jax.jit(lambda x, k, g: jax.vjp(lambda k: f(x, k), k)[1](g)[0]),
                                 (x, k, g))}
    return {d: best_seconds(lambda c=calls[d]: jax.block_until_ready(c[0](*c[1])), repeats,
                            warm_s) for d in conv["directions"]}


def torch_seconds(conv: dict, repeats: int, warm_s: float = 0.5) -> dict:
    """Seconds of each direction of one convolution in PyTorch (best_seconds)."""
    import torch
    import torch.nn.functional as F

    n, h, w, c = conv["input"]
    kh, kw, i, o = conv["kernel"]
    (top, bottom), (left, right) = conv["padding"]
    x = torch.randn(n, c, h, w)
    if (top, left) != (bottom, right):  # torch pads symmetrically: pad the input first
        x, pad = F.pad(x, (left, right, top, bottom)), (0, 0)
    else:
        pad = (top, left)
    x.requires_grad_(True)
    k = torch.randn(o, i, kh, kw, requires_grad=True)
    y = F.conv2d(x, k, stride=tuple(conv["strides"]), padding=pad)
    g = torch.ones_like(y)

    def forward():
        with torch.no_grad():
            F.conv2d(x, k, stride=tuple(conv["strides"]), padding=pad)

    calls = {"forward": forward,
             "input_gradient": lambda: torch.autograd.grad(y, x, g, retain_graph=True),
             "kernel_gradient": lambda: torch.autograd.grad(y, k, g, retain_graph=True)}
    return {d: best_seconds(calls[d], repeats, warm_s) for d in conv["directions"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", required=True, choices=("mvdm", "tvdm", "svdm"))
    p.add_argument("--encoder", required=True)
    p.add_argument("--library", required=True, choices=("jax", "torch"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--convs", help="a JSON file of row_convs' list, instead of tracing the row")
    args = p.parse_args(argv)
    if args.library == "jax":
        from vdm_vae import cpu_env

        cpu_env.reexec_with_cpu_settings()
    if args.convs:
        with open(args.convs) as f:
            convs = json.load(f)
    else:
        convs = row_convs(args.size, args.encoder, args.batch)
    if args.library == "torch":
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
    timer = jax_seconds if args.library == "jax" else torch_seconds
    # PyTorch runs a small convolution up to 4x faster once a large one has run in the process
    # (as in a train step): every library first runs the 64 -> 64 calibration convolution.
    timer(CALIBRATION, repeats=1)
    for conv in convs:
        conv["seconds"] = timer(conv, args.repeats)
    print(json.dumps({"size": args.size, "encoder": args.encoder, "library": args.library,
                      "convs": convs}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
