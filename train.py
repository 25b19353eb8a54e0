"""Train a config's folds: ``python train.py --config Nspec16`` (``--help`` for every flag)."""
from g2net.experiments.runner import main
from utils import cli_errors

if __name__ == "__main__":
    cli_errors(main)(None, pseudo=False)
