"""A user's own network, brought in by import path: not a Sequential, average pooling, a
strided conv and GELU, to prove the export does not depend on the lecture's structure."""
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.act1 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.down = nn.Conv2d(6, 8, 3, stride=2)
        self.act2 = nn.GELU()
        self.head = nn.Linear(8 * 6 * 6, num_classes)

    def forward(self, x):
        x = self.pool(self.act1(self.stem(x)))
        x = self.act2(self.down(x))
        return self.head(x.flatten(1))
