"""Train the small MNIST [`DigitClassifier`] kept in `pretrained/mnist-classifier` next to this file.

Trains on the bundled "train" split only (8,000 digits) with random shifts of up to 2 pixels, then reports the accuracy
on the "test" split (2,000 digits, never used for training or model selection) and saves the model with
`save_pretrained` (safetensors). Takes a few minutes on 2 CPU cores:

    python examples/mnist_paper/train_classifier.py
"""

import argparse
import time

import torch
import torch.nn.functional as F
from digit_classifier import DEFAULT_CLASSIFIER_PATH, DigitClassifier
from tqdm.auto import tqdm

from diffusers_pdae.bundled import load_mnist_tensors


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=str, default=str(DEFAULT_CLASSIFIER_PATH))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--max_shift", type=int, default=2, help="random shifts of up to this many pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """
    Shift each image by its own random offset in [-max_shift, max_shift] along each axis, filling with -1.

    Args:
        images (`torch.Tensor`): `(B, 1, H, W)` in [-1, 1].

    Returns:
        `torch.Tensor`: `(B, 1, H, W)`.
    """
    batch_size, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)
    offset_y, offset_x = torch.randint(0, 2 * max_shift + 1, (2, batch_size, 1), generator=generator)
    rows = offset_y + torch.arange(height)  # (B, H)
    cols = offset_x + torch.arange(width)  # (B, W)
    batch_index = torch.arange(batch_size)[:, None, None]
    shifted = padded[:, 0][batch_index, rows[:, :, None], cols[:, None, :]]  # (B, H, W)
    return shifted.unsqueeze(1)


@torch.no_grad()
def predict(model: DigitClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities `(N, 10)` for images `(N, 1, 32, 32)`, in eval mode."""
    model.eval()
    return torch.cat([model.predict_proba(batch) for batch in images.split(batch_size)])


def main() -> None:
    args = parse_args()
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # dropout uses the global generator

    train_images, train_labels = load_mnist_tensors("train")

    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(train_images) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=args.epochs * steps_per_epoch
    )

    start = time.perf_counter()
    progress = tqdm(total=args.epochs * steps_per_epoch, desc="training")
    for epoch in range(args.epochs):
        model.train()
        permutation = torch.randperm(len(train_images), generator=generator)
        for indices in permutation.split(args.batch_size):
            images = random_shift(train_images[indices], args.max_shift, generator)
            loss = F.cross_entropy(model(images), train_labels[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress.update()
            progress.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
    progress.close()
    print(f"Training time: {time.perf_counter() - start:.0f} s")

    test_images, test_labels = load_mnist_tensors("test")
    probabilities = predict(model, test_images)
    confidence, prediction = probabilities.max(dim=-1)
    accuracy = (prediction == test_labels).float().mean().item()
    print(f"Test accuracy: {accuracy:.2%} ({len(test_labels)} digits)")
    print(f"Fraction of test digits with max probability > 0.9: {(confidence > 0.9).float().mean().item():.2%}")

    model.save_pretrained(args.output_dir)
    print(f"Saved to {args.output_dir}")


if __name__ == "__main__":
    main()
