"""``make run``'s Hydra sweeper (:mod:`.plan_sweeper`). Hydra instantiates sweepers only
from the ``hydra_plugins`` namespace package, hence this package beside ``modularity``."""
