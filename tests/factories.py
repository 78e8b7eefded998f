"""Model factories a user would write; tests copy this file beside their recipes."""

from torch import nn


def tiny_mlp(hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def two_outputs() -> nn.Module:
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(64, 8)
            self.head_a = nn.Linear(8, 10)
            self.head_b = nn.Linear(8, 2)

        def forward(self, image):
            hidden = self.body(image.flatten(1)).relu()
            return self.head_a(hidden), self.head_b(hidden)

    return TwoHeads()


def not_a_module():
    return "a string"
