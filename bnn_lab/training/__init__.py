"""Training: the LightningModule, optimizers, callbacks, loggers and the run itself."""
