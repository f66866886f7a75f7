"""The project's own small models: recipes, training, checkpoints (``make models``)."""
