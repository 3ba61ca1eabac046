"""Networks (pure torch) of MaskGIT (FSQ paper §4.1 / §4.3) and UViM (§4.4).

- ``vqgan.py``: MaskGIT's convolutional VQGAN encoder and decoder.
- ``discriminator.py``: the StyleGAN discriminator of MaskGIT's VQGAN (blur-pool residual blocks).
- ``tokenizer.py``: the Stage I tokenizer, encoder → quantizer (FSQ or VQ, injected) → decoder.
- ``transformer.py``: MaskGIT's bidirectional Stage II transformer and its class embedder (label dropout for CFG).
- ``attention.py``: multi-head attention with dropout on the attention probabilities.
- ``dropout.py``: dropout with a cheap CPU mask.
- ``vit.py``: ViT building blocks shared by UViM's two stages.
- ``uvim_vqvae.py``: UViM Stage I, the guiding-code autoencoder over a dense task's label space.
- ``uvim_lm.py``: UViM Stage II, the encoder-decoder language model that predicts the guiding code from the image.
"""
