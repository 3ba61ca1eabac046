"""Depth estimation (NYU Depth v2; FSQ paper §4.4): the task, its labels and transforms, NYU and the embedded scenes."""
