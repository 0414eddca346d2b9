"""Bad input a real user produces, fed to every command: one clear line, exit status 2, nothing lost, no code run.

Each case runs ``freqlab.cli.main`` in this process and asserts: exit status 2; exactly one line on stderr, which
names the problem (``expect``, case-insensitive) and is not a traceback; every file that existed before (the shared
fixtures and the case's own) unchanged; and, for the pickle carrying code, that the code never ran.

The table in ``docs/HOSTILE_INPUTS.md`` is generated from :data:`CASES`:
``python tests/test_hostile_inputs.py > docs/HOSTILE_INPUTS.md`` (a test checks that it is current).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "code-ran.txt"  # written by the malicious pickle if it is ever unpickled


# --------------------------------------------------------------------------------------------------------------
# what each case sets up in its own folder (shared fixtures are in ``world``)
# --------------------------------------------------------------------------------------------------------------
def _npz(values) -> Callable[[Path, Path], None]:
    def make(tmp: Path, world: Path) -> None:
        np.savez(tmp / "images.npz", images=values)
    return make


def _truncated_npz(tmp: Path, world: Path) -> None:
    np.savez(tmp / "full.npz", images=np.zeros((8, 16, 16, 1), np.float32))
    data = (tmp / "full.npz").read_bytes()
    (tmp / "images.npz").write_bytes(data[: len(data) // 2])


def _random_bytes_npz(tmp: Path, world: Path) -> None:
    (tmp / "images.npz").write_bytes(np.random.default_rng(0).bytes(4096))


def _zip_of_other_files(tmp: Path, world: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp / "images.npz", "w") as zf:
        zf.writestr("images", np.random.default_rng(0).bytes(512))


def _random_bytes(name: str, config: bool = False) -> Callable[[Path, Path], None]:
    def make(tmp: Path, world: Path) -> None:
        (tmp / name).write_bytes(np.random.default_rng(1).bytes(2048))
        if config:  # a checkpoint's config beside it, so the weights file itself is what is read
            shutil.copyfile(world / "run" / "checkpoints" / "step-000010" / "config.json", tmp / "config.json")
    return make


def _empty_folder(tmp: Path, world: Path) -> None:
    (tmp / "images").mkdir()


def _corrupt_folder(tmp: Path, world: Path) -> None:
    (tmp / "images").mkdir()
    for i in range(3):
        (tmp / "images" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)


def _png(path: Path, size: int, mode: str = "L") -> None:
    from PIL import Image

    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def _single_image_folder(tmp: Path, world: Path) -> None:
    (tmp / "images").mkdir()
    _png(tmp / "images" / "only.png", 24)


def _tiny_images_folder(tmp: Path, world: Path) -> None:
    (tmp / "images").mkdir()
    for i in range(12):
        _png(tmp / "images" / f"{i}.png", 4)


def _corrupt_cifar(tmp: Path, world: Path) -> None:
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"not a pickle at all" * 10)


def _copy(what: str, name: str, edit: Callable[[Path], None] | None = None) -> Callable[[Path, Path], None]:
    """A copy of the shared fixture ``world/what`` as the case's ``name``, then ``edit(copy)``."""
    def make(tmp: Path, world: Path) -> None:
        source = world / what
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp / name)
        if edit is not None:
            edit(tmp / name)
    return make


def _edit_config(**changes) -> Callable[[Path], None]:
    def edit(ckpt: Path) -> None:
        config = json.loads((ckpt / "config.json").read_text())
        for key, value in changes.items():
            if key == "sigma_max":
                config["denoiser"]["sigma_max"] = value
            else:
                config[key] = value
        (ckpt / "config.json").write_text(json.dumps(config))
    return edit


def _garbage_config(ckpt: Path) -> None:
    (ckpt / "config.json").write_text("{not json")


def _truncate_weights(ckpt: Path) -> None:
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])


def _run_with_a_corrupt_checkpoint(tmp: Path, world: Path) -> None:
    shutil.copytree(world / "run", tmp / "run")
    (tmp / "run" / "checkpoints" / "step-000000" / "config.json").write_text("garbage")


def _pickle_with_code(tmp: Path, world: Path) -> None:
    import torch

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp / MARKER), "w"))

    torch.save({"weight": Payload()}, tmp / "model.pt")


def _diffusers_without_scheduler(tmp: Path, world: Path) -> None:
    shutil.copytree(world / "ddpm" / "unet", tmp / "unet")


def _unknown_beta_schedule(tmp: Path, world: Path) -> None:
    shutil.copytree(world / "ddpm", tmp / "ddpm")
    path = tmp / "ddpm" / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    config["beta_schedule"] = "made_up"
    path.write_text(json.dumps(config))


def _resolution_mismatch(tmp: Path, world: Path) -> None:
    shutil.copytree(world / "run" / "checkpoints" / "step-000010", tmp / "big")
    config = json.loads((tmp / "big" / "config.json").read_text())
    config["denoiser"]["image_shape"] = [1, 32, 32]
    config["unet"]["sample_size"] = 32
    (tmp / "big" / "config.json").write_text(json.dumps(config))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"these are not the results you are looking for")


def _a_file(tmp: Path, world: Path) -> None:
    (tmp / "file.txt").write_text("a file, not a folder")


def _state_file(run: Path, pattern: str) -> Path:
    (found,) = run.glob(pattern)
    return found


def _only_random_finetune(tmp: Path, world: Path) -> None:
    (tmp / "results" / "finetune-random").mkdir(parents=True)
    shutil.copyfile(world / "finetune" / "finetune.nc", tmp / "results" / "finetune-random" / "finetune.nc")


def _images_changed_after_a_sweep(tmp: Path, world: Path) -> None:
    """A sweep of the run's first checkpoint on an array of 8 images, then image 5 changed: resuming it to add the
    second checkpoint must not keep the first's numbers beside data statistics of other images."""
    from freqlab.sweep import study as sweep

    images = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 1)).astype(np.float32)
    np.savez(tmp / "images.npz", images=images)
    sweep.sweep(world / "run" / "checkpoints" / "step-000000", "array", [0.1, 1.0], n_images=8, device="cpu",
                progress=False, out=tmp / "out.nc", data_options={"path": str(tmp / "images.npz")})
    images[5] = 1 - images[5]
    np.savez(tmp / "images.npz", images=images)


def _corrupt_results_folder(tmp: Path, world: Path) -> None:
    (tmp / "results").mkdir()
    _garbage(tmp / "results" / "sweep.nc")


# --------------------------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    bad: str  # the bad input, in words (for the table)
    argv: str  # the command line; {tmp}, {world} and {run} are filled in
    expect: str  # what the one line must say (case-insensitive substring)
    setup: Callable[[Path, Path], None] | None = None

    @property
    def command(self) -> str:
        return self.argv.split()[0]


PRE = "pretrain --preset tiny --steps 2 --checkpoints 2"  # the settings of the shared pre-training run
SWEEP = "sweep {run} --n-images 8 --sigmas 0.1,1 --out {tmp}/out.nc --quiet"
FT = "finetune {run}/checkpoints/step-000010 --images 32 --batch-size 8 --n-eval 8 --n-data 16 --out {tmp}/ft --quiet"
NAN = np.full((8, 16, 16, 1), 0.5, np.float32)
NAN[3, 4, 4, 0] = np.nan
INF = np.full((8, 16, 16, 1), 0.5, np.float32)
INF[2, 0, 0, 0] = np.inf

CASES = [
    # every command
    Case("unknown-command", "a command that does not exist", "transform x", "invalid choice: 'transform'"),
    Case("unknown-option", "an option the command does not have", SWEEP + " --fast", "unrecognized arguments: --fast"),
    Case("bad-number", "a number that is not one", "sweep {run} --n-images many", "invalid int value: 'many'"),
    *[Case(f"{cmd}-device-{name}", f"device {dev}", f"{argv} --device {dev}", expect)
      for cmd, argv in (("spectra", "spectra --n-images 8 --out {tmp}/s"),
                        ("pretrain", "pretrain --preset tiny --out {tmp}/p --quiet"),
                        ("sweep", SWEEP), ("finetune", FT), ("demo", "demo --quick --out {tmp}/d --quiet"))
      for name, dev, expect in (("unknown", "foo", "unknown device 'foo'"), ("empty", "''", "unknown device ''"),
                                ("mps", "mps", "not available"))],
    # spectra
    Case("spectra-unknown-source", "a data source that does not exist", "spectra --sources natural,photos --out "
         "{tmp}/s", "unknown data source 'photos'"),
    Case("spectra-no-images", "zero images", "spectra --n-images 0 --out {tmp}/s", "n_images"),
    Case("spectra-unknown-window", "a window that does not exist", "spectra --window tukey --out {tmp}/s", "tukey"),
    # pretrain
    Case("pretrain-unknown-preset", "a preset that does not exist", "pretrain --preset huge --out {tmp}/p",
         "invalid choice: 'huge'"),
    Case("pretrain-zero-steps", "zero training steps", "pretrain --preset tiny --steps 0 --out {tmp}/p", "steps"),
    Case("pretrain-truncated-npz", "a truncated .npz", "pretrain --preset tiny --data array --data-path "
         "{tmp}/images.npz --out {tmp}/p", "images.npz", _truncated_npz),
    Case("pretrain-random-npz", "random bytes named .npz", "pretrain --preset tiny --data array --data-path "
         "{tmp}/images.npz --out {tmp}/p", "is not a NumPy", _random_bytes_npz),
    Case("pretrain-object-npz", "an .npz holding Python objects", "pretrain --preset tiny --data array --data-path "
         "{tmp}/images.npz --out {tmp}/p", "never unpickles", _npz(np.array([{"a": 1}] * 8, dtype=object))),
    Case("pretrain-nan-images", "an array with a NaN pixel", "pretrain --preset tiny --data array --data-path "
         "{tmp}/images.npz --out {tmp}/p", "NaN", _npz(NAN)),
    Case("pretrain-empty-folder", "an empty image folder", "pretrain --preset tiny --data folder --data-path "
         "{tmp}/images --out {tmp}/p", "holds no image files", _empty_folder),
    Case("pretrain-corrupt-cifar", "CIFAR-10 batches that are not pickles", "pretrain --preset tiny --data cifar10 "
         "--data-path {tmp}/cifar-10-batches-py --out {tmp}/p", "not a CIFAR-10 batch", _corrupt_cifar),
    Case("pretrain-reserved-data-option", "a data option that has its own setting", "pretrain --preset tiny "
         "--data-option path=x.npz --out {tmp}/p", "have their own settings"),
    Case("pretrain-bad-data-option", "a data option with a bad value", "pretrain --preset tiny --data-option "
         "max_crop=abc --out {tmp}/p", "max_crop"),
    Case("pretrain-out-under-file", "an output path under a file", "pretrain --preset tiny --out {tmp}/file.txt/p",
         "file.txt", _a_file),
    Case("pretrain-resume-garbage-state", "resuming from a garbage state file", PRE + " --resume --out {tmp}/run",
         "state.pt", _copy("pretrain", "run", lambda r: _garbage(r / "state" / "state.pt"))),
    Case("pretrain-resume-truncated-state", "resuming from a truncated state file", PRE + " --resume --out {tmp}/run",
         "state.pt", _copy("pretrain", "run", lambda r: _truncate(r / "state" / "state.pt"))),
    Case("pretrain-resume-other-settings", "resuming with other settings", PRE + " --lr 0.5 --resume --out {tmp}/run",
         "differs in lr", _copy("pretrain", "run")),
    Case("pretrain-garbage-run-file", "a garbage run.json", PRE + " --resume --out {tmp}/run", "run.json",
         _copy("pretrain", "run", lambda r: _garbage(r / "run.json"))),
    # sweep: models
    Case("sweep-missing-checkpoint", "a checkpoint path that does not exist", "sweep {tmp}/nothing --out "
         "{tmp}/out.nc", "does not exist"),
    Case("sweep-empty-folder", "an empty folder as the model", "sweep {tmp}/images --out {tmp}/out.nc",
         "empty", _empty_folder),
    Case("sweep-corrupt-checkpoint-in-run", "a run folder with one corrupt config.json", SWEEP.replace(
        "{run}", "{tmp}/run"), "cannot be read", _run_with_a_corrupt_checkpoint),
    Case("finetune-one-image", "a data folder holding one image", FT + " --data folder --data-path {tmp}/images",
         "holds 1 image(s); fine-tuning needs at least 2", _single_image_folder),
    Case("finetune-out-is-a-file", "an output path that is a file", FT.replace("{tmp}/ft", "{tmp}/file.txt"),
         "file.txt is a file, not a folder", _a_file),
    Case("sweep-empty-step-folder", "a run folder with an empty checkpoints/step-000020/", SWEEP.replace(
        "{run}", "{tmp}/run"), "step-000020 looks like a checkpoint but cannot be read: it is empty",
         _copy("run", "run", lambda r: (r / "checkpoints" / "step-000020").mkdir())),
    Case("sweep-empty-finetune-folder", "a fine-tuning run with an empty checkpoints/finetune-0000099-ema/",
         SWEEP.replace("{run}", "{tmp}/ft"), "finetune-0000099-ema looks like a checkpoint but cannot be read: it is "
         "empty", _copy("finetune", "ft", lambda r: (r / "checkpoints" / "finetune-0000099-ema").mkdir())),
    Case("sweep-garbage-config", "a checkpoint whose config.json is garbage", SWEEP.replace("{run}", "{tmp}/ckpt"),
         "config.json", _copy("run/checkpoints/step-000010", "ckpt", _garbage_config)),
    Case("sweep-truncated-weights", "truncated safetensors weights", SWEEP.replace("{run}", "{tmp}/ckpt"),
         "model.safetensors", _copy("run/checkpoints/step-000010", "ckpt", _truncate_weights)),
    Case("sweep-sigma-max-null", 'config.json with "sigma_max": null', SWEEP.replace("{run}", "{tmp}/ckpt"),
         "sigma_max", _copy("run/checkpoints/step-000010", "ckpt", _edit_config(sigma_max=None))),
    Case("sweep-denoiser-not-a-dict", 'config.json with "denoiser": [1]', SWEEP.replace("{run}", "{tmp}/ckpt"),
         "denoiser", _copy("run/checkpoints/step-000010", "ckpt", _edit_config(denoiser=[1]))),
    Case("sweep-pickle-with-code", "a .pt file whose pickle would run code", SWEEP.replace("{run}", "{tmp}/model.pt"),
         "model.pt", _pickle_with_code),
    Case("sweep-random-pt", "random bytes named .pt, with a config.json beside", SWEEP.replace("{run}",
         "{tmp}/model.pt"), "not a torch file", _random_bytes("model.pt", config=True)),
    Case("sweep-random-pkl", "random bytes named .pkl", SWEEP.replace("{run}", "{tmp}/net.pkl") + " --trust-pickle",
         "is not a Python pickle", _random_bytes("net.pkl")),
    Case("sweep-diffusers-without-scheduler", "a diffusers UNet folder without its scheduler",
         SWEEP.replace("{run}", "{tmp}/unet"), "scheduler", _diffusers_without_scheduler),
    Case("sweep-unknown-beta-schedule", "a scheduler with an unknown beta_schedule", SWEEP.replace("{run}",
         "{tmp}/ddpm"), "made_up", _unknown_beta_schedule),
    Case("sweep-resolution-mismatch", "checkpoints made for different resolutions", SWEEP.replace(
        "{run}", "{run}/checkpoints/step-000010 {tmp}/big"), "--any-resolution", _resolution_mismatch),
    # sweep: noise levels and options
    *[Case(f"sweep-sigmas-{name}", f"noise levels {sigmas.lstrip('=')}", SWEEP.replace(" 0.1,1", sigmas if
          sigmas.startswith("=") else " " + sigmas), expect)
      for name, sigmas, expect in (("zero", "0,1", "positive"), ("negative", "=-1,1", "positive"),
                                   ("nan", "nan,1", "finite"), ("duplicate", "1,1", "distinct"))],
    Case("sweep-unknown-mode", "a mode that does not exist", SWEEP + " --modes nonsense", "modes"),
    Case("sweep-one-image", "one image per noise level", SWEEP.replace("--n-images 8", "--n-images 1"), "n_images"),
    Case("sweep-bad-bands", "band edges out of order", SWEEP + " --bands 0.3,0.1", "band"),
    Case("sweep-unknown-data", "a data source that does not exist", SWEEP + " --data photos", "photos"),
    # sweep: data
    Case("sweep-nan-images", "an array with a NaN pixel", SWEEP + " --data array --data-path {tmp}/images.npz",
         "NaN", _npz(NAN)),
    Case("sweep-inf-images", "an array with an Inf pixel", SWEEP + " --data array --data-path {tmp}/images.npz",
         "Inf", _npz(INF)),
    Case("sweep-complex-images", "a complex-valued array", SWEEP + " --data array --data-path {tmp}/images.npz",
         "complex", _npz(np.zeros((8, 16, 16, 1), np.complex64))),
    Case("sweep-int-images-out-of-range", "an int32 array with values up to 4095", SWEEP + " --data array "
         "--data-path {tmp}/images.npz", "none of [0, 1], [-1, 1], [0, 255]",
         _npz(np.arange(8 * 16 * 16, dtype=np.int32).reshape(8, 16, 16, 1) % 4096)),
    Case("sweep-empty-array", "an array of zero images", SWEEP + " --data array --data-path {tmp}/images.npz",
         "no images", _npz(np.zeros((0, 16, 16, 1), np.float32))),
    Case("sweep-too-small-images", "images smaller than the model's resolution", SWEEP + " --data array "
         "--data-path {tmp}/images.npz", "smaller than", _npz(np.zeros((8, 4, 4, 1), np.float32))),
    Case("sweep-truncated-npz", "a truncated .npz", SWEEP + " --data array --data-path {tmp}/images.npz",
         "images.npz", _truncated_npz),
    Case("sweep-random-npz", "random bytes named .npz", SWEEP + " --data array --data-path {tmp}/images.npz",
         "is not a NumPy", _random_bytes_npz),
    Case("sweep-zip-of-other-files", "an .npz whose member is not an array", SWEEP + " --data array --data-path "
         "{tmp}/images.npz", "not a NumPy array", _zip_of_other_files),
    Case("sweep-empty-image-folder", "an empty image folder", SWEEP + " --data folder --data-path {tmp}/images",
         "holds no image files", _empty_folder),
    Case("sweep-corrupt-image-folder", "a folder of corrupt image files", SWEEP + " --data folder --data-path "
         "{tmp}/images", "could be read", _corrupt_folder),
    Case("sweep-single-image-folder", "a folder with one image", SWEEP + " --data folder --data-path {tmp}/images",
         "has 1 images", _single_image_folder),
    Case("sweep-tiny-image-folder", "a folder of images smaller than the resolution", SWEEP + " --data folder "
         "--data-path {tmp}/images", "smaller than", _tiny_images_folder),
    # sweep: outputs
    Case("sweep-truncated-results", "a truncated results file at --out", SWEEP.replace("{tmp}/out.nc",
         "{tmp}/sweep.nc"), "--overwrite", _copy("sweep.nc", "sweep.nc", _truncate)),
    Case("sweep-garbage-results", "a garbage results file at --out", SWEEP.replace("{tmp}/out.nc", "{tmp}/sweep.nc"),
         "--overwrite", _copy("sweep.nc", "sweep.nc", _garbage)),
    Case("sweep-resume-other-settings", "resuming a results file with other settings", SWEEP.replace(
        "{tmp}/out.nc", "{tmp}/sweep.nc").replace("0.1,1", "0.1,2"), "different settings",
        _copy("sweep.nc", "sweep.nc")),
    Case("sweep-resume-images-changed", "resuming a sweep whose images changed since (image 5 of 8)",
         SWEEP + " --data array --data-path {tmp}/images.npz", "measured_images_digest", _images_changed_after_a_sweep),
    Case("sweep-out-under-file", "an output path under a file", SWEEP.replace("{tmp}/out.nc",
         "{tmp}/file.txt/out.nc"), "file.txt", _a_file),
    Case("sweep-out-is-folder", "an output path that is a folder", SWEEP.replace("{tmp}/out.nc", "{tmp}"),
         "is a directory"),
    # finetune
    Case("finetune-missing-checkpoint", "a checkpoint that does not exist", FT.replace(
        "{run}/checkpoints/step-000010", "{tmp}/nothing"), "does not exist"),
    Case("finetune-freezes-nothing", "a freeze pattern that matches nothing", FT + " --freeze zzz",
         "matches no parameter"),
    Case("finetune-freezes-everything", "a freeze pattern that matches everything", FT + " --freeze .",
         "every parameter"),
    Case("finetune-zero-images", "a budget of zero images", FT.replace("--images 32", "--images 0"), "images"),
    Case("finetune-empty-data-folder", "an empty data folder", FT + " --data folder --data-path {tmp}/images",
         "holds no image files", _empty_folder),
    Case("finetune-resume-other-settings", "resuming with other settings", FT +
         " --loss hinge", "loss", _copy("finetune", "ft")),
    Case("finetune-resume-truncated-state", "resuming from truncated weights", FT.replace("--images 32",
         "--images 64"), "weights.safetensors", _copy("finetune", "ft",
             lambda r: _truncate(_state_file(r, "state/images_seen-*/weights.safetensors")))),
    Case("finetune-resume-garbage-latest", "resuming with a garbage latest.json", FT.replace("--images 32",
         "--images 64"), "latest.json", _copy("finetune", "ft", lambda r: _garbage(r / "state" / "latest.json"))),
    # figures
    Case("figures-missing-folder", "a results folder that does not exist", "figures {tmp}/nothing --out {tmp}/f",
         "does not exist"),
    Case("figures-unknown-figure", "a figure that does not exist", "figures {world} --only spectrum_art --out "
         "{tmp}/f", "spectrum_art"),
    Case("figures-only-what-is-missing", "a figure asked for whose results are not there (a fine-tune is)",
         "figures {tmp}/results --only output_spectra --out {tmp}/f", "output_spectra cannot be drawn (results file",
         _only_random_finetune),
    Case("figures-garbage-results", "a results folder whose sweep.nc is garbage", "figures {tmp}/results --out "
         "{tmp}/f", "sweep.nc", _corrupt_results_folder),
    Case("figures-out-under-file", "an output folder under a file", "figures {world} --out {tmp}/file.txt/f",
         "is a file, not a folder", _a_file),
    # demo
    Case("demo-out-under-file", "an output path under a file", "demo --quick --out {tmp}/file.txt/d --quiet",
         "file.txt", _a_file),
]


@dataclass(frozen=True)
class ApiCase:
    id: str
    bad: str
    call: str  # Python, with ``x`` a batch of 4 RGB 16x16 images and ``spectral`` imported
    expect: str


API_CASES = [
    ApiCase("spectra-empty-batch", "an empty batch", "spectral.radial_power_spectrum(x[:0])", "holds no images"),
    ApiCase("spectra-nan", "an image with a NaN",
            "spectral.radial_power_spectrum(x.masked_fill(x > 2.5, float('nan')))", "NaN or Inf"),
    ApiCase("spectra-integer", "integer images", "spectral.band_statistics((x * 100).long())", "floating-point"),
    ApiCase("spectra-complex", "complex images", "spectral.radial_power_spectrum(x.to(torch.complex64))",
            "floating-point"),
    ApiCase("spectra-too-small", "2x2 images", "spectral.radial_power_spectrum(x[..., :2, :2])", "at least"),
    ApiCase("spectra-not-a-tensor", "a NumPy array", "spectral.radial_power_spectrum(x.numpy())", "torch.Tensor"),
    ApiCase("sweep-sigmas-empty", "no noise levels", "sigmas.check_sigmas([])", "empty"),
]

#: Inputs that look odd but are read on purpose, each checked by :func:`test_odd_but_valid_input_is_read_as_documented`.
ACCEPTED = [
    ("noise levels out of order (`--sigmas 2,1`)", "sorted: the σ grid is a coordinate"),
    ("an integer array with values in [0, 255]", "read as 8-bit images"),
    ("a 16-bit grayscale PNG or TIFF in an image folder", "scaled by its bit depth (65535 is white), never clipped to 8 bits"),
    ("an image folder mixing gray, RGB, RGBA and palette images", "each converted to the channels asked for"),
    ("images of any finite scale (×1e-11, ×1e30) to the band statistics", "finite statistics"),
    ("`--modes both`", "denoise and generate"),
    ("`freqlab figures` on a sweep of one mode, or on the random-init fine-tune alone",
     "draws what its inputs allow and names each figure skipped, with the reason"),
]


# --------------------------------------------------------------------------------------------------------------
# shared fixtures
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_run) -> Path:
    """Everything the cases read and must leave unchanged: a tiny run, a pre-training run with state, a diffusers
    pipeline, a sweep results file and a fine-tuning run."""
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from freqlab.finetune.loop import finetune
    from freqlab.pretrain import loop as pretrain
    from freqlab.sweep import study as sweep

    world = tmp_path_factory.mktemp("world")
    shutil.copytree(make_tiny_run([(0, 0), (10, 1)]), world / "run")
    pretrain.pretrain(pretrain.make_config("tiny", steps=2, n_checkpoints=2), world / "pretrain", progress=False,
                      device="cpu")
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(world / "ddpm")
    sweep.sweep(world / "run", n_images=8, sigmas=[0.1, 1.0], device="cpu", progress=False, out=world / "sweep.nc")
    finetune(world / "run" / "checkpoints" / "step-000010", world / "finetune", n_images=32, batch_size=8, n_eval=8,
             n_data=16, device="cpu", progress=False)
    return world


def _snapshot(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_loses_nothing(case: Case, world: Path, tmp_path, capsys):
    from freqlab import cli

    if case.setup is not None:
        case.setup(tmp_path, world)
    before = _snapshot(world, tmp_path)
    argv = [a.replace("''", "") for a in case.argv.format(tmp=tmp_path, world=world, run=world / "run").split()]
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, f"exit {status}; stderr: {err[-2000:]}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[-2000:]}"
    assert "Traceback" not in err and case.expect.lower() in lines[0].lower(), lines[0]
    after = _snapshot(world, tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a file that existed before was changed"
    assert not (tmp_path / MARKER).exists(), "the pickle's code ran"


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_bad_input_to_the_api_is_a_value_error_that_says_what(case: ApiCase):
    import torch

    from freqlab import spectral
    from freqlab.measure import sigmas
    from freqlab.sweep import study as sweep

    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError) as raised:
        eval(case.call, {"spectral": spectral, "sigmas": sigmas, "sweep": sweep, "torch": torch, "x": x})
    assert case.expect.lower() in str(raised.value).lower()


@pytest.mark.parametrize("script", sorted((ROOT / "analyses").glob("fig_*.py")), ids=lambda p: p.stem)
def test_an_analysis_script_on_a_missing_folder_says_so_in_one_line(script, tmp_path, monkeypatch, capsys):
    import runpy

    # run as `python analyses/fig_x.py MISSING OUT` runs it, in this process (one interpreter start per script would
    # cost most of the test; the subprocess path is checked once below)
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "nothing"), str(tmp_path / "f")])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(script), run_name="__main__")
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.strip().count("\n") == 0 and "does not exist" in err


def test_an_analysis_script_run_by_python_says_so_in_one_line(tmp_path):
    import subprocess

    script = ROOT / "analyses" / "fig_cutoff_vs_sigma.py"
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing"), str(tmp_path / "f")],
                         capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "does not exist" in run.stderr


@pytest.mark.slow  # draws every figure three times
@pytest.mark.parametrize("content", ["generate-only sweep", "denoise-only sweep", "random-init fine-tune only"])
def test_figures_draw_what_partial_results_allow(content, world, tmp_path, capsys):
    from freqlab import cli
    from freqlab.plots.registry import DEMO_FIGURES
    from freqlab.sweep import study as sweep

    results = tmp_path / "results"
    if content.endswith("sweep"):
        mode = content.split("-")[0]
        sweep.sweep(world / "run", n_images=8, sigmas=[0.1, 1.0], modes=(mode,), device="cpu", progress=False,
                    out=results / "sweep.nc")
        drawn = {"generate": {"output_spectra", "relative_power_heatmap", "band_statistics"},
                 "denoise": {"output_spectra", "cutoff_vs_sigma", "transfer_coherence"}}[mode]
    else:
        (results / "finetune-random").mkdir(parents=True)
        shutil.copyfile(world / "finetune" / "finetune.nc", results / "finetune-random" / "finetune.nc")
        drawn = {"finetune_statistics", "frozen_parameters"}
    capsys.readouterr()
    assert cli.main(["figures", str(results), "--out", str(tmp_path / "f")]) == 0
    assert {p.stem for p in (tmp_path / "f").glob("*.png")} == drawn
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("skipped (") == len(DEMO_FIGURES) - len(drawn)


def test_odd_but_valid_input_is_read_as_documented(tmp_path):
    import torch
    from PIL import Image

    from freqlab import spectral
    from freqlab.sweep.config import parse_modes
    from freqlab.data import sources as data
    from freqlab.measure.sigmas import check_sigmas

    assert check_sigmas([2.0, 1.0]).tolist() == [1.0, 2.0]
    ints = np.arange(8 * 16 * 16, dtype=np.int64).reshape(8, 16, 16, 1) % 256
    np.save(tmp_path / "ints.npy", ints)
    read = data.make_source("array", resolution=16, grayscale=True, path=str(tmp_path / "ints.npy")).images(range(8))
    assert torch.allclose(read, torch.from_numpy(ints.transpose(0, 3, 1, 2)).float() / 127.5 - 1.0, atol=1e-6)
    folder = tmp_path / "mixed"
    folder.mkdir()
    grey16 = np.full((20, 20), 32768, np.uint16)
    grey16[:, 10:] = 65535
    Image.fromarray(grey16).save(folder / "a16.png")
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(folder / "b_rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 20), 255, np.uint8)])).save(folder / "c_rgba.png")
    Image.fromarray(rgb).convert("P").save(folder / "d_palette.png")
    x = data.make_source("folder", resolution=16, path=str(folder)).images(range(4))
    assert x.shape == (4, 3, 16, 16)
    assert float((x[0, :, :, 1] - (32768 / 65535 * 2 - 1)).abs().max()) < 1e-4  # mid-grey, not clipped to white
    assert float(x[0, :, :, -2:].min()) > 0.999
    assert torch.allclose(x[1:, 0], torch.ones(3, 16, 16)) and torch.allclose(x[1:, 1:], -torch.ones(3, 2, 16, 16))
    y = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    for scale in (1e-11, 1e30):
        stats = spectral.band_statistics(y * scale)
        assert bool(torch.isfinite(stats.power).all()) and bool(torch.isfinite(stats.kurtosis).all())
    assert parse_modes("both") == ("denoise", "generate")

#: Inputs that change under a results file, each checked by the named test of tests/test_fingerprints.py.
CHANGED = [
    ("the run is retrained (`pretrain --overwrite`) while a sweep reads it", "the file records the weights each "
     "checkpoint was measured with; on resume the ones that differ now are measured again",
     "test_a_run_retrained_while_it_is_swept_is_measured_again_on_resume"),
    ("weights of the same size swapped in, file times restored", "measured again on resume (the fingerprint is of "
     "the loaded weights, not of names, sizes or times)",
     "test_weights_swapped_in_with_their_file_times_restored_are_measured_again"),
    ("any image changed since the file was written (not only the first few)", "resume refused in one line "
     "(`measured_images_digest` differs); the file is left as it was",
     "test_a_resumed_sweep_checks_every_image_not_only_the_first"),
    ("measured images change while the sweep reads them", "stops before anything measured on them is saved",
     "test_images_that_change_while_a_sweep_reads_them_stop_it_before_anything_is_saved"),
    ("the images the references are fitted on changed since the file was written", "resume refused in one line "
     "(`references_images_digest` differs) before anything is saved",
     "test_a_resumed_sweep_whose_references_were_fitted_on_other_images_is_refused"),
]


def test_every_change_in_the_table_is_a_test():
    tests = (ROOT / "tests" / "test_fingerprints.py").read_text()
    assert all(f"def {test}(" in tests for _, _, test in CHANGED)


# --------------------------------------------------------------------------------------------------------------
# the table in docs/
# --------------------------------------------------------------------------------------------------------------
def table() -> str:
    head = ["# Bad input and what freqlab says", "",
            "Generated from `tests/test_hostile_inputs.py` (`python tests/test_hostile_inputs.py > "
            "docs/HOSTILE_INPUTS.md`); the test runs every row. For each, freqlab exits with status 2, prints exactly "
            "one line on stderr (no traceback) that contains the text in the last column, changes no file that "
            "existed before, and runs no code from the input. `{run}` is a run folder of checkpoints, `{tmp}` the "
            "case's own folder.", "",
            "| command | bad input | command line | the one line says |", "|---|---|---|---|"]
    rows = [f"| `{c.command}` | {c.bad} | `freqlab {c.argv.replace('|', '/')}` | {c.expect} |" for c in CASES]
    api = ["", "## The Python API", "", "Each raises `ValueError` whose message contains the last column (`x`: a batch "
           "of images).", "", "| bad input | call | the message says |", "|---|---|---|"]
    api += [f"| {c.bad} | `{c.call}` | {c.expect} |" for c in API_CASES]
    odd = ["", "## Odd but valid: read on purpose", "", "| input | what freqlab does |", "|---|---|"]
    odd += [f"| {what} | {does} |" for what, does in ACCEPTED]
    changed = ["", "## Inputs that change under a results file", "", "Each is a test of `tests/test_fingerprints.py`: "
               "the sweep fingerprints the weights it measured (after loading) and digests every image it reads, so "
               "a resumed file never mixes other weights' or other images' numbers with its own.", "",
               "| what changed | what freqlab does | test |", "|---|---|---|"]
    changed += [f"| {what} | {does} | `{test}` |" for what, does, test in CHANGED]
    return "\n".join(head + rows + api + odd + changed) + "\n"


def test_the_docs_table_is_current():
    assert (ROOT / "docs" / "HOSTILE_INPUTS.md").read_text() == table(), \
        "regenerate: python tests/test_hostile_inputs.py > docs/HOSTILE_INPUTS.md"


if __name__ == "__main__":
    sys.stdout.write(table())
