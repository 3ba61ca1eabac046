"""Colorization (ImageNet; FSQ paper §4.4): the task and its (grayscale context, colour label) pairs."""
