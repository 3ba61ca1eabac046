"""Stage II generation: the masking schedule (training and sampling), MaskGIT decoding with CFG, M2T compression."""
