"""Evaluation on objects (models, extractors, datasets), never on the config (``pipeline/evaluate.py`` and
``pipeline/uvim.py`` build the objects).

- ``maskgit.py``: the MaskGIT evaluation (FSQ paper §4.3, Table 1, Fig. 4): reference statistics, reconstruction,
  sampling FID / IS / precision / recall, the guidance sweep and the compression cost.
- ``uvim.py``: UViM's evaluation (§4.4, Table 2): the prediction, the Stage I oracle and two baselines per image.
- ``semantics.py``: what single codes mean (§5.2, App. A.3).
- ``reporting.py``: a sweep's runs collected into Table 1 / Fig. 3 / Fig. 4 / Fig. 10.
- ``tradeoff_findings.py``: Fig. 3's findings at CPU scale, each a verdict that can come out either way.
- ``uvim_report.py``: Table 2 over runs and seeds, with its findings.
"""
