"""Figure records, dataset readers, the decode-once patch store and the synthetic dataset."""
