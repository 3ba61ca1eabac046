"""Stage I losses: L2, perceptual (LPIPS-VGG), GAN (non-saturating, R1, LeCam). Pure torch."""
