"""activeloss: deep active learning built around loss prediction.

A strategy is an *objective* (what is trained beside the model) paired with an
*acquisition* (how the next batch is chosen); a :class:`Task` says what the model predicts.
The public API::

    from activeloss import Learner, Dataset
    learner = Learner(my_net, Dataset.from_tensors(x, y, x_test, y_test), "llal", taps=["block1", "block2"])

One registry per extension point: ``TASKS``, ``MODELS``, ``READERS``, ``OBJECTIVES``,
``ACQUISITIONS`` and ``STRATEGIES``; ``register_acquisition`` turns a score function into an
acquisition.  A :class:`Project` labels real data with people, round after round.
"""
from .acquisitions import ACQUISITIONS, Acquisition, QueryContext, ScoreAcquisition, Selection, register_acquisition
from .config import Settings, option
from .data import READERS, Dataset, load_dataset
from .errors import ActiveLossError, ConfigError, DataError, PoolError
from .loop import Batch, Experiment, Learner, Plan, plan, run
from .models import MODELS
from .objectives import OBJECTIVES, Objective
from .project import Project
from .store import Store
from .strategies import STRATEGIES, Strategy
from .tasks import TASKS, Metric, Task

__version__ = "0.2.0"

__all__ = [
    "ACQUISITIONS", "Acquisition", "ActiveLossError", "Batch", "ConfigError", "DataError", "Dataset", "Experiment",
    "Learner", "MODELS", "Metric", "OBJECTIVES", "Objective", "Plan", "PoolError", "Project", "QueryContext", "READERS",
    "STRATEGIES", "ScoreAcquisition", "Selection", "Settings", "Store", "Strategy", "TASKS", "Task", "__version__",
    "load_dataset", "option", "plan", "register_acquisition", "run",
]
