"""Networks: the encoder, MAGANet and the VAE baseline."""
