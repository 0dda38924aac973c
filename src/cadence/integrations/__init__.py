"""Integrations with training frameworks; each module imports its framework on use.

- ``cadence.integrations.lightning.CadenceCallback`` — PyTorch Lightning ``[lightning]``
- ``cadence.integrations.hf.CadenceTrainerCallback`` — Hugging Face ``Trainer`` ``[hf]``
- ``cadence.integrations.tensorboard.TensorBoardSink`` — events and metrics ``[tensorboard]``
"""
