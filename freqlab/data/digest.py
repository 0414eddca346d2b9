"""What was measured, on the data side: a content digest of every image a study reads.

A sweep takes the digest of the images it measures and of those its references are fitted on before any work
(they are part of its settings fingerprint, so a results file whose images have changed since is refused in one
line instead of resumed), and checks every batch it reads during the measurement against it: images that change
while a sweep runs stop it before anything measured on them is saved.

The digest is a blake2b hash, batch by batch, of the images' values rounded to 1e-4 (``round(x·10⁴)`` as 64-bit
integers, with the batch's shape), so it does not depend on the dtype or device the images come in. Reading and
hashing is cheap beside a model: ``benchmarks/bench_fingerprints.py`` measures its share of a sweep.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

__all__ = ["ImageDigest", "batch_digest", "digest_images"]

_SIZE = 8  # bytes of digest: 16 hex characters


def batch_digest(images: torch.Tensor) -> str:
    """The digest of one batch of images (any shape, dtype and device)."""
    values = torch.round(images.detach().to("cpu", torch.float64) * 1e4).to(torch.int64).contiguous()
    digest = hashlib.blake2b(str(tuple(values.shape)).encode(), digest_size=_SIZE)
    digest.update(values.numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ImageDigest:
    """The digests of images ``start … start + n − 1`` of a source, read ``batch_size`` at a time."""

    start: int
    n: int
    batch_size: int
    batches: tuple[str, ...]

    @property
    def total(self) -> str:
        """One digest of them all (what a results file records)."""
        digest = hashlib.blake2b(f"{self.start},{self.n},{self.batch_size}".encode(), digest_size=_SIZE)
        for batch in self.batches:
            digest.update(batch.encode())
        return digest.hexdigest()

    def check(self, first: int, images: torch.Tensor, what: str) -> None:
        """ValueError unless ``images`` are the batch that starts at image ``first``, as they were digested."""
        i, offset = divmod(first - self.start, self.batch_size)
        if offset or not 0 <= i < len(self.batches):
            raise ValueError(f"{what} {first}... are not a batch of the digested images {self.start} to "
                             f"{self.start + self.n - 1} (batches of {self.batch_size})")
        if batch_digest(images) != self.batches[i]:
            raise ValueError(f"{what} {first} to {first + len(images) - 1} changed while this run read them (their "
                             "content differs from the digest taken at its start); nothing measured on them was "
                             "saved: rerun once the data stays put")


def digest_images(source, start: int, n: int, batch_size: int) -> ImageDigest:
    """Read images ``start … start + n − 1`` of ``source`` (``source.images(indices)``), ``batch_size`` at a time,
    and digest them; memory holds one batch."""
    start, n, batch_size = int(start), int(n), int(batch_size)
    batches = tuple(batch_digest(source.images(list(range(lo, min(lo + batch_size, start + n)))))
                    for lo in range(start, start + n, batch_size))
    return ImageDigest(start, n, batch_size, batches)
