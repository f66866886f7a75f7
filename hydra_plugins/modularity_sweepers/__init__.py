"""modularity's Hydra sweepers: the default (:mod:`.checked_sweeper`) and ``make run``'s
(:mod:`.plan_sweeper`). Hydra instantiates sweepers only from the ``hydra_plugins``
namespace package, hence this package beside ``modularity``."""
