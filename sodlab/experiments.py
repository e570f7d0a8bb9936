"""The studies' experiments, kept importable as ``from sodlab import experiments`` (the
notebooks' and users' path); each lives in its own module of `sodlab.studies`."""
from .studies.anatomy import allocation_table, anatomy_table  # noqa: F401
from .studies.categories import category_examples, category_replicates, category_sensitivity, loo_drop, scores_by_split  # noqa: F401
from .studies.common import DEFAULT_LAYERS, evaluate_checkpoint, seed_mean  # noqa: F401
from .studies.explorer import channel_explorer_data  # noqa: F401
from .studies.mechanisms import mechanisms_runs, mechanisms_study  # noqa: F401
from .studies.pretraining import pretraining_effect  # noqa: F401
from .studies.quickstart import guess_gaps, replicate_dir, replicate_metrics, train_replicates  # noqa: F401
from .studies.pruning import pruning_replicates, pruning_work, regularizer_study  # noqa: F401
from .studies.redundancy import redundancy_study, task_scores  # noqa: F401
