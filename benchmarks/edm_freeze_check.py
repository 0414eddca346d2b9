"""The D2O-F frozen share on EDM's own CIFAR-10 networks, built with EDM's code (which freqlab does not ship).

    git clone https://github.com/NVlabs/edm /path/to/edm        # on a connected machine
    python benchmarks/edm_freeze_check.py --edm /path/to/edm

Builds EDM's DDPM++ and NCSN++ CIFAR-10 networks (EDMPrecond, the configurations of EDM's train.py; random weights:
the frozen set depends on names only), applies freqlab's ``--freeze conv`` (the D2O code's rule on EDM networks)
and prints the frozen share. The paper reports about 85 % frozen; the D2O code's rule gives 85.4 % (DDPM++, 55.7 M
parameters) and 84.4 % (NCSN++, 56.4 M).
"""

from __future__ import annotations

import argparse
import sys

CONFIGS = {  # EDM's train.py, --arch ddpmpp / ncsnpp
    "ddpmpp": dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard", decoder_type="standard",
                   channel_mult_noise=1, resample_filter=[1, 1], model_channels=128, channel_mult=[2, 2, 2]),
    "ncsnpp": dict(model_type="SongUNet", embedding_type="fourier", encoder_type="residual", decoder_type="standard",
                   channel_mult_noise=2, resample_filter=[1, 3, 3, 1], model_channels=128, channel_mult=[2, 2, 2]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edm", required=True, help="a checkout of https://github.com/NVlabs/edm")
    args = parser.parse_args()
    sys.path.insert(0, args.edm)
    try:
        from training.networks import EDMPrecond
    except ImportError as err:
        parser.error(f"cannot import EDM's training.networks from {args.edm} ({err})")
    from freqlab.finetune.freezing import freeze_policy
    from freqlab.models.denoisers import EDMNetworkDenoiser

    for name, config in CONFIGS.items():
        net = EDMPrecond(img_resolution=32, img_channels=3, label_dim=0, **config)
        report = freeze_policy(EDMNetworkDenoiser(net.eval().requires_grad_(True)), "conv")
        print(f"{name}: {report.n_total / 1e6:.1f} M parameters, {report.frozen_share:.1%} frozen "
              f"({report.n_frozen:,}; {len(report.frozen_names)} of "
              f"{len(report.frozen_names) + len(report.trainable_names)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
