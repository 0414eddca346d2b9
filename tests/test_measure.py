"""The measurement core (freqlab.measure.core): metrics that can say "no", and file attributes a lab can share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from freqlab.data.sources import make_source
from freqlab.measure import core as measure
from freqlab.models.denoisers import Denoiser, DiffusersDenoiser
from freqlab.runtime import results
from freqlab.sweep import study as sw

QUIET = dict(device="cpu", progress=False, seed=0)


class Identity(Denoiser):
    """``D(x, σ) = x``: passes the noise through; at σ = 0.3 its high band is far above the data's."""

    def __init__(self, shape=(3, 16, 16)):
        super().__init__(image_shape=shape, sigma_min=0.01, sigma_max=80.0, sigma_data=0.5, size_multiple=1)

    def _denoise(self, x, sigma):
        return x


@pytest.fixture(scope="module")
def natural16():
    return make_source("natural", resolution=16, split="test")


def test_identity_denoiser_is_not_called_a_perfect_cutoff(natural16):
    """Round 1's one-sided cutoff called noise "signal": the identity at σ = 0.3 got f_c = 1/2."""
    ds = sw.sweep({"identity": Identity()}, natural16, [0.3], modes=("denoise",), n_images=32, batch_size=32,
                  linear_reference=0, **QUIET)
    cell = ds.isel(checkpoint=0, sigma=0).sel(mode="denoise")
    top = cell.relative_power_db.isel(freq=slice(-3, None))
    assert (top > 3).all()  # the noise puts the top bins more than 3 dB above the data ...
    fc, bound = cell.cutoff_freq.values, cell.cutoff_freq_bound.values
    assert np.all(fc < 0.45) and np.all(bound <= 0)  # ... so f_c is below them, not "every band reached"
    # and the noise passed through is not signal: coherence with the clean image falls below 0.5 before Nyquist
    assert np.all(cell.coherence_cutoff.values < 0.45) and np.all(cell.coherence_cutoff_bound.values <= 0)


def test_random_ddpm_far_above_the_data_is_out_at_the_first_bin(natural16):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    ddpm = DiffusersDenoiser(unet.eval(), DDPMScheduler(num_train_timesteps=1000))
    ds = sw.sweep({"random": ddpm}, natural16, [5.0, 20.0], modes=("generate",), n_images=16, batch_size=16,
                  **QUIET)
    gen = ds.isel(checkpoint=0).sel(mode="generate")
    assert (gen.relative_power_db.isel(freq=slice(1, None)) > 10).all()  # far above the data everywhere
    np.testing.assert_allclose(gen.cutoff_freq.values, ds.freq.values[1])
    assert (gen.cutoff_freq_bound == -1).all()  # an upper bound at the first bin, drawn and reported as one


def test_every_variable_has_reader_units_a_udunits_form_and_cf_attrs(natural16, tmp_path):
    import cf_units  # in the dev extras (make test installs them)

    for name in measure.VARIABLES:
        attrs = measure.variable_attrs(name)
        cf_units.Unit(attrs["units_udunits"])  # raises for units UDUNITS cannot parse ("dB", "cycles/pixel", ...)
        assert attrs["long_name"] and attrs["units"]
    assert measure.variable_attrs("lsd")["units"] == "dB" and measure.variable_attrs("cutoff_freq")["units"] == \
        "cycles/pixel"
    ds = sw.sweep({"identity": Identity()}, natural16, [0.3, 3.0], n_images=8, batch_size=8, linear_reference=0,
                  **QUIET)
    saved = results.load(results.save(ds, tmp_path / "s.nc"))
    assert saved.attrs["Conventions"].startswith("CF-") and saved.attrs["freqlab_version"]
    assert saved.attrs["date_created"].endswith("Z") and "python API" in saved.attrs["history"]
    for name, var in saved.variables.items():
        assert "units" in var.attrs and var.attrs.get("long_name"), name
        if "units_udunits" in var.attrs:
            cf_units.Unit(var.attrs["units_udunits"])
    assert np.isnan(saved.step.values).all()  # an in-memory model has no step: a fill value, not -1
