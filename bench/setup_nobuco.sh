#!/usr/bin/env bash
# Create bench/.venv-nobuco: the environment the nobuco baseline runs in.
#
# nobuco 0.17 imports `keras` directly and reaches into Keras 2 internals
# (`from keras.src.engine.keras_tensor import KerasTensor`), so on Keras 3 it
# fails with "No module named 'keras.src.engine'". tf-keras does not help: it
# installs as `tf_keras`, and nobuco imports `keras`. TensorFlow 2.15 is the
# last release whose `keras` is Keras 2 (keras 2.15, which still has
# keras/src/engine) and it has Python 3.11 wheels; it needs numpy < 2.
# torch/torchvision are pinned to the releases kept on local disk.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${1:-$HERE/.venv-nobuco}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
"$VENV/bin/python" -m pip install --quiet \
    "tensorflow-cpu==2.15.1" "keras==2.15.0" "numpy<2" "nobuco==0.17.0" \
    safetensors
# Fail here, not in the middle of a benchmark, if the combination does not import.
"$VENV/bin/python" -c "import torch, tensorflow, keras, nobuco; print('nobuco env:', 'torch', torch.__version__, 'tensorflow', tensorflow.__version__, 'keras', keras.__version__)"
touch "$VENV/.installed"
