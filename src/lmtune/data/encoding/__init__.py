"""From records to training rows: chat templates and loss masks, encoding at scale, packing."""
