"""Adapting anchors to the task, training stitching layers, evaluation."""
