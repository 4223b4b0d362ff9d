"""Evaluation: loss and bits per byte, zero-shot minimal pairs, (Super)GLUE finetuning."""
