"""GAN fine-tuning into a one-step generator (D2O / D2O-F): settings, generator, freezing, losses, discriminator, the
game, the loop and its run folder."""
