"""Losses (pure torch): the Stage I objective and UViM's dense tasks.

- ``stage1.py``: the Stage I objective, L2 + perceptual + GAN + quantizer loss (FSQ paper §4.1, MaskGIT's recipe).
- ``perceptual.py``: LPIPS-VGG, the substitute for MaskGIT's ResNet-50 feature loss, from a local VGG-16 file.
- ``gan.py``: non-saturating generator and discriminator losses, R1 penalty, LeCam regulariser.
- ``uvim_tasks.py``: UViM's dense tasks by name (FSQ paper §4.4, Table 2).
- ``uvim_depth.py``: the depth task: labels, loss, logits → metres, metrics.
- ``uvim_panoptic.py``: the panoptic task: labels, loss, logits → panoptic segmentation, PQ.
- ``uvim_colorization.py``: the colorization task: labels, loss, prediction, PSNR and FID-5k.
"""
