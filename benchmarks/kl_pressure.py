"""Depth-Dropout and BBDropout (4 layers × 8 filters) trained on 40 and on 200 scikit-learn
digits: with the KL divided by the labelled-set size, the prior dominates at very few labels.

    python benchmarks/kl_pressure.py

Prints labels, learning rate, model, epochs, train / validation / test accuracy and the
active filters per layer; test is digits 1100 and on, validation 1000–1099.
"""

import torch
from sklearn.datasets import load_digits

from archdal import RunConfig
from archdal.archopt.cnn import BBDropoutCNN, DepthDropoutCNN
from archdal.config import ArchOptions
from archdal.train import accuracy, train_model


def main() -> None:
    torch.set_num_threads(2)
    digits = load_digits()
    x = torch.tensor(digits.images * 255 / 16).round().to(torch.uint8)[:, None]
    y = torch.tensor(digits.target)
    mean, std = torch.tensor([0.3]), torch.tensor([0.4])
    for n in (40, 200):
        for lr in (0.003, 0.01):
            for model_class in (DepthDropoutCNN, BBDropoutCNN):
                torch.manual_seed(0)
                size = {"truncation": 4} if model_class is DepthDropoutCNN else {"layers": 4}
                model = model_class(10, 1, mean, std, filters=8, **size)
                config = RunConfig(dataset="digits", arch="depth_dropout", arch_mode="joint",
                                   optimizer="adam", lr=lr, max_epochs=150, patience=150,
                                   arch_options=ArchOptions(filters=8, truncation=4))  # fmt: skip
                result = train_model(model, x[:n], y[:n], x[1000:1100], y[1000:1100], config, 0)
                test = accuracy(model, x[1100:], y[1100:], 512)
                print(n, lr, model_class.__name__, result.epochs, f"{result.train_acc:.2f}",
                      f"{result.val_acc:.2f}", f"{test:.3f}",
                      model.architecture_record()["active_filters"])  # fmt: skip


if __name__ == "__main__":
    main()
