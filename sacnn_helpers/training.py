"""The training loop: `train_one_epoch`, `evaluate`, and `fit` (schedule, resumable checkpoints, per-epoch
logs, torchrun), which hands the gpu recipe to airbench94's trainer (`speedrun`)."""
from __future__ import annotations

import copy
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import runtime
from .analysis import tta_logits
from .attention import attention_gammas, score_parameters
from .checkpoints import CheckpointError, load_weights, read_checkpoint, save_checkpoint
from .data import ImageSet, draw_augmentation, normalise, shift_and_flip
from .recipes import Recipe, learning_rate  # the schedule, `training.learning_rate` too
from .speedrun import fit_airbench94

REPLAY_IMAGES = 6  # test images whose maps `fit` keeps after every epoch (the explorer's epoch slider)
REPLAY_MAX_TOKENS = 256  # no replay for layers over 16 x 16 pixels: a 1,024-pixel map would add 12 MB an epoch
COMPILE_BACKEND = "inductor"  # torch.compile's backend for recipes with compile=True (tests use "eager")


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD-Nesterov with weight decay on conv and linear weights only: never on BatchNorm, biases, `gamma`, the
    temperature or the (2-D) position table; on query/key weights unless `recipe.qk_weight_decay` is False. The score
    parameters (query/key, temperature, position table) get `recipe.attention_lr_scale` x lr via their `lr_scale`."""
    qk, never_decayed = score_parameters(model)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:  # frozen (a whitening layer)
            continue
        scores = p in qk or p in never_decayed
        decay = p.dim() > 1 and p not in never_decayed and (recipe.qk_weight_decay or p not in qk)
        groups.setdefault((scores, decay), []).append(p)
    return torch.optim.SGD([{"params": params, "weight_decay": recipe.weight_decay if decay else 0.0,
                             "lr_scale": recipe.attention_lr_scale if scores else 1.0}
                            for (scores, decay), params in groups.items()],
                           lr=recipe.lr, momentum=recipe.momentum, nesterov=True)


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on `device` when `amp`, else nothing; parameters (BatchNorm's too) stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             mean: torch.Tensor | list[float], std: torch.Tensor | list[float], batch_size: int = 500,
             flip: bool = False, amp: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in 0..1) of `model` in eval mode on uint8 `images`, normalised with `mean`
    and `std` (0..255 units); `flip` averages mirrored logits. Under torchrun each process scores its share."""
    if len(labels) == 0:
        raise ValueError("evaluate got no images: an empty split (the gpu recipe holds out no validation images, "
                         "val_size=0); score another split, such as data['test']")
    was_training = model.training
    model.eval()
    device = runtime.model_device(model)
    world, rank = runtime.world_size(), runtime.rank()
    # float32 and int64: Apple's MPS has no float64; the count of correct predictions stays exact
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    try:
        for i in range(rank * batch_size, len(labels), world * batch_size):
            x = normalise(images[i:i + batch_size].to(device), mean, std).contiguous(
                memory_format=runtime.memory_format(device))
            y = labels[i:i + batch_size].to(device)
            with _autocast(device, amp):  # the mirror averaged in float32, even under bf16 autocast
                logits = tta_logits(lambda t: model(t).float(), x, 1 if flip else 0)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
    finally:
        model.train(was_training)
    return (runtime.all_reduce_sum(loss_sum).item() / len(labels),  # the one read-back to the host
            runtime.all_reduce_sum(correct).item() / len(labels))


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train: dict[str, torch.Tensor],
                    recipe: Recipe, epoch: int, total_steps: int, seed: int, amp: bool = False,
                    progress: bool = True, eager: nn.Module | None = None) -> dict[str, float]:
    """One pass over the training images in a seeded order; returns loss, accuracy, lr, seconds, images/s.
    `train` holds device tensors: uint8 `images`, `labels`, `mean`/`std` (C x 1 x 1). Each global batch of one
    permutation (each torchrun process its share) is augmented, normalised and stepped at the schedule's lr. Loss and
    accuracy are read back every `recipe.log_every` steps only, so the GPU never waits for the host. `eager`: the
    uncompiled model, for a short last batch (one shape when compiled)."""
    from tqdm.auto import tqdm
    device = train["images"].device
    world, rank = runtime.world_size(), runtime.rank()
    n, batch = len(train["labels"]), recipe.batch_size
    steps = math.ceil(n / batch)
    # a seed per epoch: a resumed run repeats an unbroken one; order on the CPU (same on every process)
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    torch.manual_seed(seed * 100_003 + epoch)  # dropout and other random layers
    order = torch.randperm(n, generator=gen).to(device)
    aug_gen = gen if device.type == "cpu" else _device_generator(device, seed * 100_003 + epoch, gen)
    model.train()
    totals = torch.zeros(2, device=device)  # loss sum, correct predictions (this process's share)
    seen = 0
    runtime.synchronize(device)
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=not progress or rank != 0,
               leave=True, dynamic_ncols=True)
    for i in bar:
        lr = learning_rate(epoch * steps + i, total_steps, recipe.lr, recipe.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        idx = order[i * batch:(i + 1) * batch]  # the global batch
        dy, dx, mirror = draw_augmentation(len(idx), recipe.translate, recipe.flip, aug_gen)
        mine = slice(rank * len(idx) // world, (rank + 1) * len(idx) // world)  # this process's share
        x = shift_and_flip(train["images"][idx[mine]], dy[mine], dx[mine], mirror[mine], recipe.translate)
        x = normalise(x, train["mean"], train["std"]).contiguous(
            memory_format=runtime.memory_format(device, recipe.channels_last))
        y = train["labels"][idx[mine]]
        net = eager if eager is not None and len(idx) < batch else model
        with _autocast(device, amp):
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        # DDP averages the processes' gradients; weighting each share's mean loss by its size x processes / global
        # batch turns that average into the gradient of the mean loss over the whole global batch
        scale = len(y) * world / len(idx)
        optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1 else loss).backward()
        optimizer.step()
        totals += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum().float()])
        seen += len(y)
        if progress and rank == 0 and (i % recipe.log_every == 0 or i == steps - 1):
            loss_sum, correct = totals.tolist()  # the only read-back inside the epoch
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    runtime.synchronize(device)
    seconds = time.perf_counter() - start
    loss_sum, correct = runtime.all_reduce_sum(totals).tolist()  # every process together saw all n images
    return dict(train_loss=loss_sum / n, train_accuracy=correct / n, lr=lr, step_seconds=seconds,
                images_per_second=n / seconds)


def _device_generator(device: torch.device, seed: int, fallback: torch.Generator) -> torch.Generator:
    """A generator on `device`, or `fallback` where the device has none."""
    try:
        return torch.Generator(device).manual_seed(seed)
    except RuntimeError:
        return fallback


def _resume(checkpoint: str | os.PathLike | None, identity: dict[str, Any], force: bool
            ) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None; checked before anything is loaded into the model."""
    if checkpoint is None or force or not Path(checkpoint).is_file():
        return None
    blob = read_checkpoint(checkpoint)
    if blob["meta"].get("identity") != identity:
        raise CheckpointError(f"{checkpoint} was saved by another run (recipe, seed or epochs differ); "
                              f"pass force=True (--force) to overwrite it, or choose another path")
    return blob


def fit(model: nn.Module, data: dict[str, ImageSet], recipe: Recipe, *, device: str | torch.device = "auto",
        seed: int = 0, epochs: int | None = None, checkpoint: str | os.PathLike | None = None,
        force: bool = False, progress: bool | str = True) -> dict[str, Any]:
    """Train `model` on `data` ({"train", "val", "test"}) with `recipe`; returns the result (a dict).

    Each epoch: `train_one_epoch` on the schedule over all epochs, then validation and a history row (losses,
    accuracies, seconds, `gamma`s, the model's `epoch_report`). With `checkpoint`: a save after every epoch, with
    the maps of the first `REPLAY_IMAGES` test images (`replay`, the explorer's epoch slider); an interrupted run
    resumes, a finished one is reused unless `force`. At the end the test set is scored once. A model with
    `fit_to_data` (a whitening layer) is set from 5,000 training images first; under torchrun, DDP with the same
    global batch, schedule and seed; the gpu recipe goes to airbench94's trainer (`speedrun`), saved once.
    `progress`: True a bar per epoch, "lines" a line per epoch, False nothing. The model ends on `device`, in eval
    mode. Result keys include test_accuracy (0..1), test_loss, history, train_seconds (training and validation,
    resumed epochs too), images_per_second, mean, std and classes (what feeds the model)."""
    device = runtime.get_device(device)
    recipe = replace(recipe, epochs=recipe.epochs if epochs is None else epochs)
    amp = runtime.use_amp(device, recipe.amp)
    runtime.configure_backends(device, recipe.tf32, recipe.deterministic)
    train, val, test = data["train"], data["val"], data["test"]
    identity = dict(recipe=recipe.settings(), seed=seed, epochs=recipe.epochs)
    blob = _resume(checkpoint, identity, force)
    if blob is not None:
        load_weights(blob, model, checkpoint)
        if blob["meta"].get("finished"):
            _say(progress, f"reusing the finished checkpoint {checkpoint} (force=True retrains)")
            model.to(device).eval()
            return dict(blob["meta"]["result"], reused_checkpoint=str(checkpoint))
    if recipe.trainer == "airbench94":  # the gpu recipe: airbench94's own training, in seconds (speedrun.py)
        history, test_loss, test_acc, extra = fit_airbench94(model, data, recipe, device, seed, progress is True,
                                                             _attention_log)
        result = _result(model, data, recipe, device, False, seed, test_loss, test_acc, history, 0, **extra)
        _save(checkpoint, model, identity, None, train, history, finished=True, result=result)
        return result
    if recipe.epochs != int(recipe.epochs):
        raise ValueError(f"fit trains whole epochs, got epochs={recipe.epochs}; only the gpu recipe "
                         f"(airbench94's training) stops part-way into its last epoch")
    history: list[dict[str, Any]] = [] if blob is None else list(blob["meta"]["history"])
    model.to(device, memory_format=runtime.memory_format(device, recipe.channels_last))
    optimizer = make_optimizer(model, recipe)
    if blob is not None:
        optimizer.load_state_dict(blob["meta"]["optimizer"])
    elif hasattr(model, "fit_to_data"):  # the same on every process
        model.fit_to_data(normalise(train.images[:5000].to(device), train.mean, train.std))
    step_model, eager = _step_models(model, device, recipe)
    tensors = dict(images=train.images.to(device), labels=train.labels.to(device),
                   mean=torch.tensor(train.mean, device=device).view(-1, 1, 1),
                   std=torch.tensor(train.std, device=device).view(-1, 1, 1))
    probe = normalise((val if len(val) else train).images[:256].to(device), train.mean, train.std)
    replay = _replay(model, test, train, device, blob) if checkpoint is not None else None
    total_steps = math.ceil(len(train) / recipe.batch_size) * recipe.epochs
    save, start = partial(_save, checkpoint, model, identity, optimizer, train), len(history)
    for epoch in range(start, int(recipe.epochs)):
        t0 = time.perf_counter()
        row = train_one_epoch(step_model, optimizer, tensors, recipe, epoch, total_steps, seed, amp,
                              progress is True, eager)
        val_loss, val_acc = (evaluate(model, val.images, val.labels, train.mean, train.std,
                                      flip=recipe.flip_test, amp=amp) if len(val) else (None, None))
        row = dict(epoch=epoch + 1, **row, val_loss=val_loss, val_accuracy=val_acc,
                   seconds=time.perf_counter() - t0, **_attention_log(model, probe))
        if replay is not None:
            replay["snapshots"].append(model.epoch_snapshot(replay["inputs"], epoch + 1))
        _say(progress, _epoch_line(row, recipe.epochs))
        history.append(row)
        save(history, finished=False, replay=replay)
    test_loss, test_acc = evaluate(model, test.images, test.labels, train.mean, train.std,
                                   flip=recipe.flip_test, amp=amp)
    result = _result(model, data, recipe, device, amp, seed, test_loss, test_acc, history, start)
    save(history, finished=True, result=result, replay=replay)
    _say(progress, f"test accuracy {test_acc:.4f} after {recipe.epochs} epochs, "
                   f"{result['train_seconds']:.0f} s of training")
    model.eval()
    return result


def _replay(model: nn.Module, test: ImageSet, train: ImageSet, device: torch.device,
            blob: dict[str, Any] | None) -> dict[str, Any] | None:
    """The first `REPLAY_IMAGES` test images' maps, one snapshot per epoch from 0 (untrained), continued when
    resumed; None without maps, with a layer over `REPLAY_MAX_TOKENS` pixels, or off process 0."""
    n = min(REPLAY_IMAGES, len(test))
    if not hasattr(model, "epoch_snapshot") or runtime.rank() != 0 or n == 0:
        return None
    if blob is not None:  # resumed: continue its replay, on its images (a checkpoint saved without one gets none)
        if "replay" not in blob["meta"]:
            return None
        stored = blob["meta"]["replay"]
        return dict(stored, inputs=normalise(test.images[stored["images"]].to(device), train.mean, train.std))
    inputs = normalise(test.images[:n].to(device), train.mean, train.std)
    first = model.epoch_snapshot(inputs, 0)
    if (not first["layers"] and first["pool"] is None) or any(h * w > REPLAY_MAX_TOKENS for h, w in first["sizes"]):
        return None
    return dict(split="test", images=list(range(n)), inputs=inputs, snapshots=[first])


def _attention_log(model: nn.Module, probe: torch.Tensor) -> dict[str, Any]:
    """What both trainers log after every epoch: `gamma`s and (process 0) `epoch_report` on the normalised `probe`."""
    row: dict[str, Any] = dict(gammas=attention_gammas(model))
    if runtime.rank() == 0 and hasattr(model, "epoch_report"):
        row["attention"] = model.epoch_report(probe)
    return row


def _say(progress: bool, text: str) -> None:
    """A progress line on stderr, from process 0 only."""
    if progress and runtime.rank() == 0:
        print(text, file=sys.stderr, flush=True)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = ("no validation split" if row["val_accuracy"] is None
           else f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f}")
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.3f} acc {row['train_accuracy']:.3f} | "
            f"{val} | {row['seconds']:.0f} s")


def _step_models(model: nn.Module, device: torch.device, recipe: Recipe) -> tuple[nn.Module, nn.Module | None]:
    """(stepping model: DDP under torchrun, compiled if asked; the uncompiled one for a short last batch, or None)."""
    step_model = model
    if runtime.world_size() > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if not recipe.compile:
        return step_model, None
    return torch.compile(step_model, backend=COMPILE_BACKEND), step_model


def _save(checkpoint: str | os.PathLike | None, model: nn.Module, identity: dict[str, Any],
          optimizer: torch.optim.Optimizer | None, train: ImageSet, history: list[dict[str, Any]], finished: bool,
          result: dict[str, Any] | None = None, replay: dict[str, Any] | None = None) -> None:
    """Write the checkpoint (process 0), then let no process run ahead of it."""
    if checkpoint is not None and runtime.rank() == 0:
        extra = {} if result is None else dict(result=result)
        if replay is not None:
            extra["replay"] = {k: v for k, v in replay.items() if k != "inputs"}
        mean, std = (result["mean"], result["std"]) if result else (train.mean, train.std)  # what the model saw
        save_checkpoint(checkpoint, model, identity=identity, epoch=len(history), history=history,
                        optimizer=None if optimizer is None else optimizer.state_dict(), finished=finished,
                        mean=mean, std=std, classes=train.classes, **extra)
    runtime.barrier()


def _result(model: nn.Module, data: dict[str, ImageSet], recipe: Recipe, device: torch.device, amp: bool,
            seed: int, test_loss: float, test_acc: float, history: list[dict[str, Any]], resumed_from: int,
            **extra: Any) -> dict[str, Any]:
    """The run's result, for both trainers; `extra` adds or replaces entries (the airbench94 trainer's)."""
    train = data["train"]
    return dict(model=type(model).__name__, model_config=copy.deepcopy(getattr(model, "config", {})),
                parameters=sum(p.numel() for p in model.parameters()), dataset=recipe.dataset,
                recipe=recipe.name, device=str(device), world_size=runtime.world_size(), amp=amp,
                compile=recipe.compile, epochs=recipe.epochs, seed=seed, test_accuracy=test_acc,
                test_loss=test_loss, train_seconds=sum(h["seconds"] for h in history),
                images_per_second=len(train) * len(history) / sum(h["step_seconds"] for h in history),
                train_images=len(train), val_images=len(data["val"]), test_images=len(data["test"]),
                data_source=train.source, mean=train.mean, std=train.std, classes=train.classes,
                history=history, machine=runtime.machine(), resumed_from=resumed_from) | extra
