"""The runtime every stage shares: model and tokenizer loading, quantization, the tiny model, device,
generation, the run directory and the environment report."""
