"""What was measured, on the data side: a content digest of every image a study reads.

A sweep digests the images it measures before any work (the digest is part of its settings fingerprint, so a
results file whose images have changed since is refused in one line instead of resumed) and checks every batch it
reads during the measurement against it: images that change while a sweep runs stop it before anything measured on
them is saved. The images its references are fitted on are digested as the fit reads them (they are many, and read
once), and a resumed file whose references were fitted on other images is refused before anything is saved.

The digest is a blake2b hash, batch by batch, of the images' exact values as float32 (with the batch's shape), so
it does not depend on the dtype or device they come in, and any change of any pixel changes it. Hashing is cheap
beside a model: ``benchmarks/bench_fingerprints.py`` measures its share of a sweep.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

__all__ = ["ImageDigest", "DigestAsRead", "batch_digest", "digest_images"]

_SIZE = 8  # bytes of digest: 16 hex characters


def batch_digest(images: torch.Tensor) -> str:
    """The digest of one batch of images (any shape, dtype and device)."""
    values = images.detach().to("cpu", torch.float32).contiguous()
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


class DigestAsRead:
    """The digest of consecutive batches as another pass reads them: ``add(first, images)`` for each batch, in
    order from image ``start``; :meth:`digest` once they are all read."""

    def __init__(self, start: int, batch_size: int):
        self.start, self.batch_size, self.next, self.batches = int(start), int(batch_size), int(start), []

    def add(self, first: int, images: torch.Tensor) -> None:
        if first != self.next:
            raise ValueError(f"images {first}... read out of order (expected {self.next}...)")
        self.batches.append(batch_digest(images))
        self.next += len(images)

    def digest(self) -> ImageDigest:
        return ImageDigest(self.start, self.next - self.start, self.batch_size, tuple(self.batches))
