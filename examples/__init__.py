"""PyTorch reference models that the specs in specs/ convert."""
