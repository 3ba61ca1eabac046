"""Networks: MaskGIT VQGAN encoder/decoder, StyleGAN-style discriminator, the Stage I tokenizer. Pure torch."""
