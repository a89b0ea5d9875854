"""The studies' one supervised training loop: seeded mini-batches, Adam, epochs, optional validation and early stopping.

Every model the studies train goes through `fit`: the DMD demo's edge and cloud models and the switcher (000 A.3),
teachers, KD students and fine-tuned classifiers (003 section III), and bottlenecked student heads (002 eq. (1)).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from profilers.errors import EdgesimError
from profilers.io import atomic_write_bytes
from profilers.progress import Progress, silent


@dataclass
class History:
    """Per-epoch mean training loss per sample and validation value, the epoch whose weights were kept, wall time."""

    train_loss: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    best_epoch: int = 0  # early stopping: the epoch of the kept weights; else the last epoch
    epochs_run: int = 0
    time_s: float = 0.0

    @property
    def best_val(self) -> float:
        """The validation value of the kept weights (inf without validation)."""
        return self.val[self.best_epoch - 1] if self.val and self.best_epoch else float("inf")


def fit(model, loss_fn: Callable, inputs, targets, epochs: int, lr: float, batch_size: int = 64, seed: int = 0,
        params: Optional[Sequence] = None, weight_decay: float = 0.0, batch_mean: bool = True,
        validate: Optional[Callable[[], float]] = None, patience: Optional[int] = None,
        frozen_norm: bool = False, progress: Progress = silent) -> History:
    """Adam on loss_fn(model(inputs[b]), *targets[b]) over seeded shuffled batches; returns the model's History.

    targets: a tensor or a tuple of tensors indexed like inputs (labels; labels and teacher logits; teacher outputs).
    batch_mean: loss_fn returns the batch mean (True) or the batch sum (False, as 002 eq. (1)); train_loss is per
    sample either way. params: the trained parameters (default: those requiring gradients). validate() is called
    after each epoch, model in eval mode without gradients; with patience it is a loss: training stops after
    `patience` epochs without a decrease and the best weights are restored (000 A.3). frozen_norm keeps every
    BatchNorm layer in eval mode while training (running statistics frozen: fine-tuning on frozen features, 003
    section IV-D). The model ends in eval mode.
    """
    import torch

    if epochs < 0:
        raise EdgesimError(f"epochs {epochs}: must be 0 or more")
    if patience is not None and validate is None:
        raise EdgesimError("early stopping (patience) needs a validation function")
    targets = targets if isinstance(targets, tuple) else (targets,)
    torch.manual_seed(seed)  # dropout
    gen = torch.Generator().manual_seed(seed)  # batch order
    trainable = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
    n = len(inputs)
    steps = (n + batch_size - 1) // batch_size
    history = History()
    best, best_state, bad = float("inf"), None, 0
    start = time.perf_counter()
    for epoch in range(1, int(epochs) + 1):
        model.train()
        if frozen_norm:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        total = 0.0
        order = torch.randperm(n, generator=gen)
        for step, i in enumerate(range(0, n, batch_size)):
            j = order[i:i + batch_size]
            loss = loss_fn(model(inputs[j]), *(t[j] for t in targets))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * (len(j) if batch_mean else 1)
            progress((epoch - 1) * steps + step + 1, epochs * steps)
        history.train_loss.append(total / max(n, 1))
        history.epochs_run = epoch
        if validate is not None:
            model.eval()
            with torch.no_grad():
                history.val.append(float(validate()))
        if patience is None:
            history.best_epoch = epoch
        elif history.val[-1] < best - 1e-6:
            best, bad, history.best_epoch = history.val[-1], 0, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.time_s = time.perf_counter() - start
    return history


def save_state(module, path: str | Path, metadata: Optional[dict[str, str]] = None) -> Path:
    """A module's state_dict as .safetensors (no pickle), written atomically; metadata goes into the file header."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    return atomic_write_bytes(path, save(state, metadata=metadata))
