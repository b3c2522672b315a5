"""soundnet: train and run a detector of one target sound (CNN-LSTM-Dense, per 10 ms frame)."""

__version__ = "0.1.0"
