"""Evaluation: ANN recall, IR metrics against qrels, intrinsic dimensionality, reports."""
