"""A quiet console: what the libraries print that is not the user's to act on is kept off stderr.

Lightning's info lines (device lists, "💡 Tip" adverts, "Restoring states…") go; its warnings stay.
Deprecation notices of one library about another, and the progress bar of writing a single model file,
go too. Downloads keep their progress bars.
"""

from __future__ import annotations

import logging
import warnings


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # examples are read in the main process
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # lightning's own deprecation notice, about torch
    import lightning.pytorch  # noqa: F401  (it sets its loggers' levels on import: quiet them afterwards)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    _no_model_file_bars()


def _no_model_file_bars() -> None:
    """transformers' own bars ("Writing model shards" for a one-file model) off; hub downloads' as they were."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    hub_bars_were_off = hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns the hub's bars off…
    if not hub_bars_were_off:
        hub_utils.enable_progress_bars()  # …so turn those back on
