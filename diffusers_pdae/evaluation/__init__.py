from .classifier_scores import classify, confident_fraction
from .digit_classifier import DigitClassifier, load_digit_classifier
from .metrics import mse, psnr, ssim

__all__ = ["DigitClassifier", "classify", "confident_fraction", "load_digit_classifier", "mse", "psnr", "ssim"]
