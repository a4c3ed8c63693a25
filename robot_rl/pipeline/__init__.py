"""The pipeline on the twin, in one process: record, pretrain, fine-tune, evaluate, report."""
