"""The StegaStamp-style token generator: encoder G_e, bit decoder and optional critic.

Layout follows the ActiveDaemon/StegaStamp reference code, scaled to the dataset's own
resolution: the bit string goes through a dense layer to a 3-channel map of side S/4,
is upsampled to S x S and concatenated with the image; a U-Net (32-32-64-128-256 down with
stride 2, symmetric up path with skips) outputs a 3-channel residual: the token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(ci: int, co: int, k: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(ci, co, k, stride, padding=(k - 1) // 2 if k % 2 else 0)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def he_init(module: nn.Module) -> None:
    """He-normal weights, zero biases: the reference (Keras ``he_normal``) initialisation.

    PyTorch's default init shrinks the signal by ~0.6 per layer; through this many layers the
    decoder's output no longer depends on its input and training sits on a 50% bit plateau.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _Up(nn.Module):
    """Nearest-neighbour x2, then the reference code's 2x2 conv (padded to keep the size)."""

    def __init__(self, ci: int, co: int):
        super().__init__()
        self.conv = nn.Conv2d(ci, co, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.conv(F.pad(x, (0, 1, 0, 1))))


class TokenEncoder(nn.Module):
    """G_e(x, s) -> residual; the authorized image is clip(x + strength * residual)."""

    def __init__(self, n_bits: int, image_size: int, channels: int = 3):
        super().__init__()
        if image_size % 16:
            raise ValueError(
                f"the token U-Net needs an image size divisible by 16, got {image_size}"
            )
        self.side = image_size // 4
        self.image_size = image_size
        self.channels = channels
        self.secret_dense = nn.Linear(n_bits, 3 * self.side * self.side)
        self.conv1 = _conv(channels + 3, 32)
        self.conv2 = _conv(32, 32, stride=2)
        self.conv3 = _conv(32, 64, stride=2)
        self.conv4 = _conv(64, 128, stride=2)
        self.conv5 = _conv(128, 256, stride=2)
        self.up6, self.conv6 = _Up(256, 128), _conv(256, 128)
        self.up7, self.conv7 = _Up(128, 64), _conv(128, 64)
        self.up8, self.conv8 = _Up(64, 32), _conv(64, 32)
        self.up9, self.conv9 = _Up(32, 32), _conv(32 + 32 + channels + 3, 32)
        self.conv10 = _conv(32, 32)
        self.residual = nn.Conv2d(32, channels, 1)
        he_init(self)

    def forward(self, bits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.secret_dense(bits * 2 - 1)).view(-1, 3, self.side, self.side)
        s = F.interpolate(s, size=(self.image_size, self.image_size), mode="nearest")
        inputs = torch.cat([s, image - 0.5], dim=1)
        c1 = self.conv1(inputs)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        c5 = self.conv5(c4)
        c6 = self.conv6(torch.cat([c4, self.up6(c5)], 1))
        c7 = self.conv7(torch.cat([c3, self.up7(c6)], 1))
        c8 = self.conv8(torch.cat([c2, self.up8(c7)], 1))
        c9 = self.conv9(torch.cat([c1, self.up9(c8), inputs], 1))
        return self.residual(self.conv10(c9))


class SpatialTransformer(nn.Module):
    """Undoes small geometric warps before decoding (StegaStamp's STN), initialised to identity."""

    def __init__(self, channels: int, image_size: int):
        super().__init__()
        self.loc = nn.Sequential(
            _conv(channels, 32, stride=2), _conv(32, 64, stride=2), _conv(64, 128, stride=2),
            nn.Flatten(), nn.Linear(128 * (image_size // 8) ** 2, 128), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.theta = nn.Linear(128, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(self.loc(x)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


class TokenDecoder(nn.Module):
    """Recovers the bit string from an authorized image: (STN) -> conv stack -> dense -> bits."""

    def __init__(self, n_bits: int, image_size: int, channels: int = 3, stn: bool = True):
        super().__init__()
        self.stn = SpatialTransformer(channels, image_size) if stn else nn.Identity()
        # The reference halves the side five times (400 px -> 13 x 13 before the dense layer).
        # At 32 px that would leave a 1 x 1 x 128 bottleneck for 127 bits, so the strides stop
        # once the map is 4 x 4: the dense layer always sees a spatial map, as in the reference.
        widths = [(channels, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 128), (128, 128)]
        downsampling = {0, 2, 4, 5, 6}  # the reference's stride-2 layers
        side, layers = image_size, []
        for i, (ci, co) in enumerate(widths):
            stride = 2 if i in downsampling and side > 4 else 1
            side //= stride
            layers.append(_conv(ci, co, stride=stride))
        self.body = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(128 * side * side, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, n_bits),
        )
        he_init(self.body)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of the bits (apply a sigmoid for probabilities)."""
        return self.body(self.stn(image - 0.5))


class Critic(nn.Module):
    """A small conv net scored with a Wasserstein loss (optional, as in the reference code)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, 8, stride=2), _conv(8, 16, stride=2), _conv(16, 32, stride=2),
            _conv(32, 64, stride=2), nn.Conv2d(64, 1, 3, padding=1),
        )  # fmt: skip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image - 0.5).mean(dim=(1, 2, 3))
