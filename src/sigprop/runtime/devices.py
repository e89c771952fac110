"""Where torch work runs: ``--device auto|cpu|cuda`` (and ``cuda:N``) for training, measurement,
``diagnose``, ``init`` and sweeps. The float64 theory never leaves numpy on the CPU.

``auto`` is CUDA when ``torch.cuda.is_available()``, else the CPU. Code that creates tensors
takes the device from the model or the inputs it is given (``tensor.device``), so one code path
serves both; random draws stay on the CPU generator and are moved afterwards, so a seed gives the
same initialization and inputs on every device (the arithmetic on a GPU still rounds
differently: results agree to float tolerance, not bit for bit).
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` named by ``device``: "auto" (or None), "cpu", "cuda" or "cuda:N".

    Raises ``ValueError`` naming the parameter for an unknown name, or for CUDA on a machine
    (or a torch build) without it.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in DEVICE_CHOICES[1:]:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or cuda:N); "
                         f"got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: this machine or torch build has no CUDA "
                             "(use --device cpu or auto)")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(f"device {device!r}: CUDA devices are cuda:0 … "
                             f"cuda:{torch.cuda.device_count() - 1}")
    return torch.device(device)
