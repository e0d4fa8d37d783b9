"""Evaluation of detectors on labelled data (a product feature: ``mantlet eval``)."""
