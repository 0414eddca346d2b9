"""The field's standard FID and KID, an optional extra of ``freqlab compare --fid``: computed by torch-fidelity with
its own Inception network, and only when that network's weights are already in the local torch hub cache
(freqlab downloads nothing). Never a home-made number under those names: without the library or the weights the
answer is one line saying so."""

from __future__ import annotations

from pathlib import Path

import torch

from freqlab.data.base import DataSource

__all__ = ["INCEPTION_WEIGHTS", "inception_weights", "standard_metrics"]

#: The file torch-fidelity loads its Inception-v3 (the 2015-12-05 TensorFlow graph FID is defined on) from.
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"


def inception_weights() -> Path:
    """Where torch-fidelity looks for its Inception weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS


class _Uint8Images(torch.utils.data.Dataset):
    """``n`` images of a source as torch-fidelity reads them: uint8 ``(3, H, W)``."""

    def __init__(self, source: DataSource, n: int):
        self.source, self.n = source, int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.source.images([i])[0]
        x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def standard_metrics(reference: DataSource, candidate: DataSource, n: int, *, device="cpu") -> dict | str:
    """``{"fid": ..., "kid": ..., "kid_std": ...}`` of ``n`` images of each set, or one line saying why not."""
    try:
        import torch_fidelity
    except ImportError:
        return "standard FID/KID: not computed (torch-fidelity is not installed: pip install torch-fidelity)"
    weights = inception_weights()
    if not weights.is_file():
        return (f"standard FID/KID: not computed (torch-fidelity's Inception weights are not in the local cache, "
                f"{weights}; freqlab downloads nothing)")
    metrics = torch_fidelity.calculate_metrics(
        input1=_Uint8Images(candidate, n), input2=_Uint8Images(reference, n), fid=True, kid=True,
        kid_subset_size=min(1000, n), cuda=torch.device(device).type == "cuda", verbose=False)
    return {"fid": float(metrics["frechet_inception_distance"]),
            "kid": float(metrics["kernel_inception_distance_mean"]),
            "kid_std": float(metrics["kernel_inception_distance_std"])}
