"""Process settings that make XLA:CPU steps much faster, without changing any number.

1. Transparent huge pages for glibc's malloc (GLIBC_TUNABLES=glibc.malloc.hugetlb=1).
   XLA:CPU allocates an executable's temporaries afresh on every call: 0.5 GB for an MVDM
   train step, 1.6 GB for TVDM, several GB for SVDM. glibc maps allocations above 32 MB
   straight from the kernel and unmaps them when freed, so every step first-touches all of
   that memory in 4 KB pages: 375,000 page faults per MVDM step. With huge pages (2 MB,
   madvise) it is 25,000, and the MVDM step goes from 1.66 s to 1.05 s on a 2-core AMD EPYC
   (TVDM 3.6 s -> 3.0 s).
2. XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution. By default
   XLA:CPU hands each convolution to YNNPACK, which runs the 3x3 convolutions at 28 x 28
   with 64 channels on one thread; XLA's own (Eigen) convolutions use every core. On 2 idle
   cores: a 64 -> 64 convolution forward + backward 118 -> 75 ms, the SVDM train step
   13.6 -> 9.5 s, its reverse step 3.7 -> 2.3 s, MVDM + OE 2.07 -> 1.50 s. It is set only
   where the process may use 2 cores or more (on one core YNNPACK is ~7% faster).
3. XLA_FLAGS=--xla_force_host_platform_device_count=2, also only on 2 cores or more: the CPU
   shows jax two devices, and the pmapped train step splits each batch over them (data
   parallel, the gradient the mean of the halves' means, as on several GPUs). Each device runs
   its half of the step while the other runs its own, so the many operations that keep one
   core busy (GroupNorm, activations, the per-example attention's loop, small products) run
   two at a time; the convolutions still use every core. Which models split, with the
   measurements, is vdm_vae/cpu/platforms.py's SPLIT_BELOW_CHANNELS; a batch that two devices do
   not divide runs on one. Work on one device (sampling, vdm_vae.evaluation.evaluate) is unchanged.

glibc and XLA read these once, when a process starts: `with_cpu_settings` adds them to the
environment of a child process, `reexec_with_cpu_settings` restarts the running command with
them. Settings already present in the environment are left as they are.

Both are for XLA:CPU only (vdm_vae/cpu/platforms.py), so they are added only where jax will
compute on the CPU, which `computes_on_cpu` tells before jax starts: JAX_PLATFORMS when it
is set, else whether an accelerator's device file and a jax plugin for it are both present.
On a GPU machine the process is left alone (an XLA_FLAGS entry that this jaxlib does not
know would even stop it).
"""

import glob
import os
import pkgutil
import platform
import sys
from typing import Mapping

THP_TUNABLE = "glibc.malloc.hugetlb=1"
CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
HOST_DEVICES = 2
DEVICES_FLAG = f"--xla_force_host_platform_device_count={HOST_DEVICES}"
REEXEC_ENV = "VDM_VAE_CPU_REEXEC"  # "0": never restart (also set in the restarted process)


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# (device files, module-name prefixes of the jax plugins or runtimes that drive them)
ACCELERATORS = ((("/dev/nvidiactl", "/dev/nvidia0"), ("jax_cuda",)),
                (("/dev/kfd",), ("jax_rocm",)),
                (("/dev/accel0", "/dev/vfio/0"), ("libtpu",)))


def computes_on_cpu(env: Mapping[str, str]) -> bool:
    """Whether jax, started with `env`, will compute on the CPU (decided without importing it).

    JAX_PLATFORMS decides when set (its first entry); otherwise an accelerator counts when one
    of its device files exists and a module of its jax plugin is installed.
    """
    platforms = env.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    installed = None
    for device_files, prefixes in ACCELERATORS:
        if not any(glob.glob(f) for f in device_files):
            continue
        if installed is None:
            installed = [m.name for m in pkgutil.iter_modules()]
        if any(name.startswith(prefixes) for name in installed):
            return False
    return True


def with_cpu_settings(env: Mapping[str, str]) -> dict:
    """A copy of `env` with the huge-page tunable and (on 2+ cores) the XLA flags above."""
    env = dict(env)
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, THP_TUNABLE) if t)
    flags = env.get("XLA_FLAGS", "")
    if available_cores() >= 2:
        added = [flag for flag in (CONV_FLAG, DEVICES_FLAG) if flag.split("=")[0] not in flags]
        if added:
            env["XLA_FLAGS"] = " ".join(f for f in [flags] + added if f)
    return env


def reexec_with_cpu_settings():
    """Restarts this process (same interpreter, options and arguments) with the settings.

    Call it first thing in an entry point, before jax starts. Returns without restarting off
    Linux, where jax will not compute on the CPU, when the environment has the settings
    already, or when VDM_VAE_CPU_REEXEC=0.
    """
    if (sys.platform != "linux" or os.environ.get(REEXEC_ENV) == "0"
            or not computes_on_cpu(os.environ)):
        return
    env = with_cpu_settings(os.environ)
    if env == dict(os.environ):
        return
    env[REEXEC_ENV] = "0"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
