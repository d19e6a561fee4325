"""Config: the strict base model and the YAML + dotted-override loader."""
