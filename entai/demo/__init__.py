"""The walking skeleton run by ``entai demo``: synthetic e-commerce data end to end."""
