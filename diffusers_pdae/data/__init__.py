from .mnist import (
    MNIST_CLASS_NAMES,
    MNIST_SPLITS,
    load_mnist,
    load_mnist_arrays,
    mnist_features,
    mnist_to_tensor,
    pad_to_size,
)

__all__ = [
    "MNIST_CLASS_NAMES",
    "MNIST_SPLITS",
    "load_mnist",
    "load_mnist_arrays",
    "mnist_features",
    "mnist_to_tensor",
    "pad_to_size",
]
