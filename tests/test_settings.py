"""freqlab.runtime.settings.require: one check, one message shape, for every config's minimums and choices."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from freqlab.runtime.settings import require, setting


@dataclass
class Config:
    n: object = 8
    mode: object = "a"


@pytest.mark.parametrize("value", [7, 7.5, "8", True, math.nan, math.inf, None])
def test_a_number_below_its_bound_or_not_whole_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"^n must be a whole number of at least 8 \(a reason\), got "):
        require(Config(n=value), at_least={"n": 8}, why={"n": "a reason"})


@pytest.mark.parametrize("value", [8.5, True, False, "9", math.nan])
def test_a_number_above_its_bound_that_is_not_a_whole_number_is_refused(value):
    with pytest.raises(ValueError, match=r"^n must be a whole number of at least 0, got "):
        require(Config(n=value), at_least={"n": 0})


@pytest.mark.parametrize("value", [8, 8.0, np.int64(9), np.float32(12.0)])
def test_a_whole_number_at_its_bound_or_above_is_kept_as_an_int(value):
    config = Config(n=value)
    require(config, at_least={"n": 8})
    assert config.n == int(value) and type(config.n) is int


def test_a_choice_outside_its_values_is_refused_and_one_inside_passes():
    with pytest.raises(ValueError, match=r"^mode must be one of a, b, None, got 'c'$"):
        require(Config(mode="c"), choices={"mode": ("a", "b", None)})
    require(Config(mode=None), choices={"mode": ("a", "b", None)})


@dataclass
class Declared:
    mode: str = setting("a", "a mode", choices=("a", "b"))


def test_a_field_declared_with_choices_is_checked_without_naming_it():
    with pytest.raises(ValueError, match=r"^mode must be one of a, b, got 'c'$"):
        require(Declared(mode="c"))
    require(Declared(mode="b"))


def test_every_config_refuses_in_that_shape():
    from freqlab.compare.config import CompareConfig
    from freqlab.finetune.config import FinetuneConfig
    from freqlab.inside.layer_config import LayerSpectraConfig
    from freqlab.measure.data_spectra_config import DataSpectraConfig
    from freqlab.pretrain.config import make_config
    from freqlab.sweep.config import SweepConfig

    for build in (lambda: CompareConfig(n_images=3), lambda: FinetuneConfig(n_images=0),
                  lambda: LayerSpectraConfig(n_images=1), lambda: DataSpectraConfig(n_images=1),
                  lambda: SweepConfig(n_images=1), lambda: make_config("tiny", steps=0).validate()):
        with pytest.raises(ValueError, match=r"must be a whole number of at least \d+"):
            build()
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        make_config("tiny", lr_schedule="linear").validate()
    for build, name in ((lambda: FinetuneConfig(loss="wgan"), "loss"), (lambda: LayerSpectraConfig(mode="x"), "mode"),
                        (lambda: SweepConfig(distribute="x"), "distribute"), (lambda: CompareConfig(split="x"), "split"),
                        (lambda: SweepConfig(reference_split="x"), "reference_split")):
        with pytest.raises(ValueError, match=rf"^{name} must be one of "):
            build()
