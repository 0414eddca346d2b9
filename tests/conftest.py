import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download anything
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests run tiny models, which gain nothing from intra-op threads; with another process on the same two
    cores, two threads were measured several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def make_tiny_run(tmp_path_factory):
    """A factory of tiny pre-training runs: ``make_tiny_run([(step, seed), ...])`` writes one freqlab checkpoint
    (a 16x16 grayscale EDM UNet, σ in [0.01, 20], weights seeded by ``seed``) per step, in the order given, and
    returns the run directory."""

    def make(steps_and_seeds) -> "os.PathLike":
        from freqlab.checkpoints.store import save_checkpoint
        from freqlab.models.denoisers import EDMDenoiser, build_unet

        root = tmp_path_factory.mktemp("run")
        for step, seed in steps_and_seeds:
            torch.manual_seed(seed)
            unet = build_unet(sample_size=16, in_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                              attention_head_dim=8)
            save_checkpoint(root / "checkpoints" / f"step-{step:06d}",
                            EDMDenoiser(unet, sigma_min=0.01, sigma_max=20.0),
                            metadata={"step": step, "images_seen": step * 8, "ema": True, "kind": "pretrain"})
        return root

    return make


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """One `freqlab demo --quick` run shared by the demo and notebook tests (the longest fixture of the suite).
    Tests that write into a run take a copy (``shutil.copytree``)."""
    from freqlab.demo import run_demo

    out = tmp_path_factory.mktemp("quick-demo")
    run_demo(out, quick=True, progress=False)
    return out

