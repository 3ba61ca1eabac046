"""fsq_repro — a config-driven reproduction of "Finite Scalar Quantization: VQ-VAE Made Simple"
(Mentzer et al., ICLR 2024). Pure-torch core (quantizers, nets, losses, generation, metrics, data);
Lightning code lives only in ``fsq_repro.lit``."""

__version__ = "0.1.0"
