"""ssl_mix: semi-supervised learning with mixup.

Interpolation Consistency Training (ICT, Verma et al. 2019) and its K-point generalisation ICT[K]
(Chaudhry et al., "When does mixup promote local linearity in learned representations?"), supervised
mixup and manifold mixup baselines, and per-layer linearity analysis.
"""

__version__ = "0.1.0"
