"""Inside the network: feature spectra of every UNet block, and what fine-tuning moved in the weights."""
