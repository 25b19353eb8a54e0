"""Running a config: the runner behind train.py/train_pseudo.py, the online training source, inference, throughput."""
