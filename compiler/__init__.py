"""torch2keras: compile a YAML mapping spec into a standalone Keras module.

The compile path (load -> schema -> resolve -> render -> write) is pure Python:
importing this package never imports torch, tensorflow or keras.
"""

__version__ = "0.1.0"
