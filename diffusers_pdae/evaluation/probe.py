"""Linear probe: how linearly separable are the classes in a frozen representation?

Protocol (the same for every representation): standardise the features with statistics of the train split, fit a
multinomial logistic regression (lbfgs) on the train codes, score accuracy on the test codes. The inverse
regularisation strength C is picked among a few values on a stratified held-out fifth of the train split only, then
the probe is refit on the whole train split; the test split never influences any choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..import_utils import require

# Wide enough that no representation picks an end of the grid (the earlier (0.01, 0.1, 1.0) was cut off at 1.0).
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


@dataclass
class LinearProbeResult:
    """What a linear probe measured.

    Attributes:
        width (`int`): feature dimension D.
        num_train (`int`): samples the probe was fit on.
        num_test (`int`): samples it was scored on.
        C (`float`): the chosen inverse regularisation strength.
        train_accuracy (`float`): accuracy on the train features, in [0, 1].
        test_accuracy (`float`): accuracy on the test features, in [0, 1].
        validation_accuracy (`dict[str, float]`): held-out accuracy for each C tried (empty when only one was given).
    """

    width: int
    num_train: int
    num_test: int
    C: float
    train_accuracy: float
    test_accuracy: float
    validation_accuracy: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def _as_numpy(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().float().numpy()
    return np.asarray(features, dtype=np.float64).reshape(len(features), -1)


def _fit_probe(features: np.ndarray, labels: np.ndarray, C: float, max_iter: int):
    linear_model = require("sklearn.linear_model", "linear_probe")
    pipeline = require("sklearn.pipeline", "linear_probe")
    preprocessing = require("sklearn.preprocessing", "linear_probe")
    probe = pipeline.make_pipeline(
        preprocessing.StandardScaler(), linear_model.LogisticRegression(C=C, max_iter=max_iter)
    )
    return probe.fit(features, labels)


def select_regularisation(
    features: np.ndarray, labels: np.ndarray, Cs: tuple[float, ...], max_iter: int = 1000, seed: int = 0
) -> tuple[float, dict[str, float]]:
    """Pick C by accuracy on a stratified held-out fifth of the (train) features `(N, D)`; ties go to the smaller C.

    Returns:
        `(C, {str(C): held-out accuracy})`.
    """
    model_selection = require("sklearn.model_selection", "linear_probe")
    fit_x, held_x, fit_y, held_y = model_selection.train_test_split(
        features, labels, test_size=0.2, stratify=labels, random_state=seed
    )
    accuracy = {str(C): float(_fit_probe(fit_x, fit_y, C, max_iter).score(held_x, held_y)) for C in Cs}
    best = max(Cs, key=lambda C: (accuracy[str(C)], -C))
    return best, accuracy


def linear_probe(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    Cs: tuple[float, ...] = DEFAULT_CS,
    max_iter: int = 1000,
    seed: int = 0,
) -> LinearProbeResult:
    """Fit a logistic-regression probe on frozen train features and score it on test features.

    Args:
        train_features (`np.ndarray` or `torch.Tensor` of shape `(N_train, ...)`): codes to fit on; trailing
            dimensions are flattened.
        train_labels (`np.ndarray` or `torch.Tensor` of shape `(N_train,)`): their integer classes.
        test_features (`np.ndarray` or `torch.Tensor` of shape `(N_test, ...)`): codes to score on.
        test_labels (`np.ndarray` or `torch.Tensor` of shape `(N_test,)`): their integer classes.
        Cs (`tuple[float, ...]`, defaults to `DEFAULT_CS`, 0.001 to 100): candidate C values; one skips the search.
        max_iter (`int`, defaults to 1000): lbfgs iterations.
        seed (`int`, defaults to 0): seed of the held-out split used to pick C.

    Returns:
        [`LinearProbeResult`].
    """
    train_x, test_x = _as_numpy(train_features), _as_numpy(test_features)
    train_y, test_y = np.asarray(train_labels).ravel(), np.asarray(test_labels).ravel()
    if len(Cs) == 1:
        C, validation = Cs[0], {}
    else:
        C, validation = select_regularisation(train_x, train_y, Cs, max_iter, seed)
    probe = _fit_probe(train_x, train_y, C, max_iter)
    return LinearProbeResult(
        width=train_x.shape[1],
        num_train=len(train_x),
        num_test=len(test_x),
        C=float(C),
        train_accuracy=float(probe.score(train_x, train_y)),
        test_accuracy=float(probe.score(test_x, test_y)),
        validation_accuracy=validation,
    )
