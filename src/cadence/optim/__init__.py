"""cadence.optim: drop-in torch optimizers that embed an adaptation rule.

``ClaraSGD`` / ``ClaraAdam`` adapt their learning rate by CLARA (cumulative path length);
``SALeRA`` is the 2017 per-layer scheme with its Page-Hinkley safeguard, for comparison.
``cadence.optim.reference`` holds plain float64 transcriptions of the CLARA equations.
"""

from cadence.optim.clara import VARIANTS, ClaraAdam, ClaraSGD
from cadence.optim.salera import PageHinkley, SALeRA
from cadence.stats import random_walk_std, reference_mu

__all__ = ["ClaraSGD", "ClaraAdam", "SALeRA", "PageHinkley", "reference_mu", "random_walk_std",
           "VARIANTS"]
