"""Import PyTorch before TensorFlow/Keras, in every process that holds both.

In a process that has already imported TensorFlow (or Keras on its TensorFlow
backend), importing `torch._dynamo` afterwards -- which torch.export and even
torch.fx tracing do -- crashes the interpreter with a segfault (triton).
Importing torch and torch._dynamo first avoids it. verify, scaffold and the
test session call `import_torch_first()` before anything imports keras.
The compile path never calls this: it imports neither framework.
"""

from __future__ import annotations


def import_torch_first() -> None:
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401
