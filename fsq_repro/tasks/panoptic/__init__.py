"""Panoptic segmentation (COCO; FSQ paper §4.4): the task, two-channel labels, COCO and the embedded scenes."""
