"""Losses (pure torch): the Stage I objective (UViM's task losses live with their tasks in ``fsq_repro/tasks/``).

- ``stage1.py``: the Stage I objective, L2 + perceptual + GAN + quantizer loss (FSQ paper §4.1, MaskGIT's recipe).
- ``perceptual.py``: LPIPS-VGG, the substitute for MaskGIT's ResNet-50 feature loss, from a local VGG-16 file.
- ``gan.py``: non-saturating generator and discriminator losses, R1 penalty, LeCam regulariser.
"""
