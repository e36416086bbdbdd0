"""Training methods: each computes one step's loss from a labeled and an unlabeled batch.

- :class:`ERM` (:mod:`~ssl_mix.methods.erm`): cross-entropy on labeled data only.
- :class:`Mixup` (:mod:`~ssl_mix.methods.mixup`): supervised mixup (Zhang et al. 2018) with K-point Dirichlet
  weights; CutMix and the Mixup/CutMix switch through timm's implementation.
- :class:`ManifoldMixup` (:mod:`~ssl_mix.methods.manifold_mixup`): supervised mixup of hidden states at a layer
  drawn each step from a set S (Verma et al. 2019, "Manifold Mixup").
- :class:`ICT` (:mod:`~ssl_mix.methods.ict`): supervised loss + w(t) * ICT[K] consistency against the EMA teacher
  (Verma et al. 2019, "Interpolation Consistency Training"; K-point form: Chaudhry et al., eq. 2).
- :class:`FixMatch` (:mod:`~ssl_mix.methods.fixmatch`): pseudo-labels of a weak view trained on a strong view
  (Sohn et al. 2020).
- :class:`MixMatch` (:mod:`~ssl_mix.methods.mixmatch`): sharpened label guesses over K views, mixed with the
  labeled batch (Berthelot et al. 2019).

The shared types and the registry are in :mod:`~ssl_mix.methods.base`. A new method is a module of its own whose
class is decorated with :func:`register_method`, imported below (one line), and whose name is added to
:data:`ssl_mix.choices.MethodName` (the names the config and the command line accept, known without importing torch;
a test holds them equal to the keys of :data:`METHODS`); :func:`ssl_mix.build_method` and the benchmarks learn of it
from :data:`METHODS`.
"""

from ssl_mix.choices import MethodName, SupervisedTerm, TeacherMode
from ssl_mix.methods.base import (
    METHODS,
    VIEW_NAMES,
    Batch,
    Method,
    StepContext,
    StepOutput,
    method_class,
    register_method,
)

# Importing a method's module registers it; this order is the order of METHODS (choices, messages, docs).
# isort: off
from ssl_mix.methods.erm import ERM
from ssl_mix.methods.mixup import Mixup
from ssl_mix.methods.manifold_mixup import ManifoldMixup
from ssl_mix.methods.ict import ICT
from ssl_mix.methods.fixmatch import FixMatch
from ssl_mix.methods.mixmatch import MixMatch
# isort: on

__all__ = ["Batch", "StepContext", "StepOutput", "Method", "ERM", "Mixup", "ManifoldMixup", "ICT", "FixMatch",
           "MixMatch",
           "MethodName", "METHODS", "VIEW_NAMES", "method_class", "register_method", "SupervisedTerm", "TeacherMode"]
