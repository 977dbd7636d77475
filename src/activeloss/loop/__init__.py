"""The loop: a steppable :class:`Learner` (fit, evaluate, query, teach), and the
:class:`Experiment` that drives one learner per (strategy, trial) with an oracle."""
from .driver import Driver, Outcome
from .experiment import Experiment, run
from .learner import Batch, Learner
from .oracle import DeferredOracle, NoisyOracle, Oracle, SimulatedOracle, simulated_oracle
from .plan import Plan, Run, plan, resolve_run
from .pool import Pool

__all__ = ["Batch", "DeferredOracle", "Driver", "Experiment", "Learner", "NoisyOracle", "Oracle", "Outcome", "Plan",
           "Pool", "Run", "SimulatedOracle", "plan", "resolve_run", "run", "simulated_oracle"]
