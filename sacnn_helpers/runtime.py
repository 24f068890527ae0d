"""Where and how code runs: the device, seeds, GPU switches, and the processes of a torchrun launch."""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

CUBLAS_ENV, CUBLAS_DETERMINISTIC = "CUBLAS_WORKSPACE_CONFIG", ":4096:8"


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def get_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; `cpu`, `cuda`, `cuda:N` and `mps` are checked."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} was asked for but torch sees {torch.cuda.device_count()} CUDA "
                               f"GPU(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not _mps_available():
            raise RuntimeError(f"device {name!r} was asked for but Apple MPS is not available; use 'auto' or 'cpu'")
    elif device.type != "cpu":
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU if none): where its inputs must go."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def memory_format(device: torch.device, channels_last: bool = True) -> torch.memory_format:
    """channels_last on CUDA (native) and the CPU (`cpu` recipe ~1.4x faster, benchmarks/memory_format.md);
    contiguous on Apple MPS, where channels_last conv backward was wrong before torch 2.6 and is slower."""
    return torch.channels_last if channels_last and device.type != "mps" else torch.contiguous_format


def use_amp(device: torch.device, amp: bool | None = None) -> bool:
    """bf16 autocast: `amp` when given, else CUDA only (slower on a CPU, untested on MPS)."""
    return device.type == "cuda" if amp is None else amp


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (GPU kernels run asynchronously): call before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def configure_backends(device: torch.device, tf32: bool = True, deterministic: bool = False) -> None:
    """GPU switches for a run; each call sets every switch, so a later call undoes an earlier one. tf32: CUDA float32
    matmuls and convolutions use TensorFloat-32 (10-bit mantissa, much faster on Ampere+). deterministic: CUDA runs
    repeat bit for bit, maybe slower: no algorithm timing (`cudnn.benchmark`) nor atomic-add backward kernels, a fixed
    cuBLAS workspace, an error for ops with no deterministic version. CPU runs repeat for the same thread count either
    way. cuBLAS reads $CUBLAS_WORKSPACE_CONFIG once, so `import sacnn_helpers` sets it when unset."""
    if device.type == "cuda":
        if deterministic and os.environ.get(CUBLAS_ENV) not in (CUBLAS_DETERMINISTIC, ":16:8"):
            raise RuntimeError(f"a deterministic CUDA run needs ${CUBLAS_ENV}={CUBLAS_DETERMINISTIC} before CUDA "
                               f"starts, and it is {os.environ.get(CUBLAS_ENV)!r}: set it in the shell (or before "
                               f"the first CUDA call) and start again")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic)


# --- torchrun: one process per device, gradients averaged by DistributedDataParallel --------------

def world_size() -> int:
    """Processes in the run: 1 unless launched by torchrun with --nproc_per_node > 1 (and initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's number, 0..world_size()-1; 0 writes files and shows progress."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_distributed(device_name: str = "auto") -> torch.device:
    """This process's device, after joining torchrun's process group if any (NCCL on cuda:LOCAL_RANK, gloo on CPU)."""
    device = get_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "LOCAL_RANK" not in os.environ:  # not torchrun, or 1 process
        return device
    local = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise RuntimeError(f"torchrun training runs on CUDA (NCCL) or the CPU (gloo), not on {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return device


def barrier() -> None:
    """Wait until every process gets here (does nothing in a single process)."""
    if world_size() > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all processes, in place, and return it (unchanged in a single process)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def close_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux, where `platform.processor()` is empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What ran the code: platform, processor, cores, torch threads and version, load, GPU name."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return dict(platform=platform.platform(), processor=cpu_model(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=str(torch.__version__),
                load_average=load, gpu=gpu)
