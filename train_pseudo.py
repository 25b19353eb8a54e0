"""Pseudo-label round: ``python train_pseudo.py --config Pseudo07`` retrains a config with its
parent's soft test labels added to every fold (same flags and outputs as train.py)."""
from g2net.experiments.runner import main
from utils import cli_errors

if __name__ == "__main__":
    cli_errors(main)(None, pseudo=True)
