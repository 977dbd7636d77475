"""VAAL and SRAAL: a VAE and a discriminator on its latent, trained beside the task model.

One module for both methods:

* **VAAL** (Sinha, Ebrahimi and Darrell, Variational Adversarial Active Learning, ICCV
  2019): a VAE learns a latent space from labeled *and* unlabeled items while trying to
  make the discriminator believe every item is labeled; the discriminator learns to tell
  the labeled items (target 1) from the unlabeled ones (target 0) by their latent mean.
  Query: the candidates the discriminator finds least "labeled" (lowest ``D(mu)``).
* **SRAAL** (Zhang et al., State-Relabeling Adversarial Active Learning, CVPR 2020): the
  same networks plus a supervised head on the latent (the "unified representation"), and
  the unlabeled items' discriminator target is relabeled from 0 to ``1 - OUI``, where the
  uncertainty indicator OUI comes from the task model's softmax (:func:`oui`).

Networks (VAAL's CIFAR architecture): encoder of four conv4x4 stride-2 layers with
``w, 2w, 4w, 8w`` channels (VAAL: w = 128, so 128/256/512/1024), BatchNorm and ReLU, then
fully connected layers to ``mu`` and ``logvar`` (latent ``--vae-latent``, 32); the decoder
mirrors it (fc to ``8w x s/8 x s/8``, three transposed conv4x4 stride 2 with BN and ReLU,
a final 1x1 transposed conv).  The discriminator is 32 -> 512 -> 512 -> 1 with ReLU; it
returns logits (the sigmoid is applied inside the loss, which is numerically safer).

Choices [choice], each a setting or documented here:

* **Any image size**: images are resized (bilinear) inside the VAE to ``s x s``, the
  smallest power of two >= their larger side, at least 16 and at most 64 (8x8 digits ->
  16, 28x28 MNIST -> 32, CIFAR stays 32, larger images -> 64); the reconstruction target
  is the resized image.  **Tabular rows** get an MLP VAE (D -> 4w -> 2w -> latent, mirrored).
* **Width** ``--vae-width``: VAAL's 128 by default; 16 for images of at most 16x16
  (digits: 16/32/64/128 channels on 16x16), which keeps a digits run's VAE cost to
  ~25 ms per step on one CPU core (VAAL's width costs ~3 s per step there).
* **Schedule**: each cycle, after the task model's training, ``ceil(--vae-epochs x
  labeled / --vae-batch-size)`` iterations (defaults 10 and 64), or ``--vae-iterations``
  when given (VAAL's code: ``50,000 images x 100 epochs // 128`` = 39,062 per cycle on
  CIFAR-10 and CIFAR-100, the value of the presets that compare VAAL); one iteration is 2 VAE
  steps and 1 discriminator step (VAAL), each VAE step on a fresh batch of labeled and of
  unlabeled items (sampled without replacement, epoch by epoch), Adam with ``--vae-lr``
  (5e-4).  The discriminator step uses the latent means of the second VAE step's batch
  (detached) instead of a third forward.  Batches get the run's training augmentation.
  VAAL's code retrains the VAE from scratch every cycle; here the VAE and discriminator
  follow the run's warm start (fresh with ``--reinit``, as in the presets that compare
  VAAL), with fresh Adam states each cycle.
* **Losses**: MSE reconstruction (mean over elements) + beta (1) x KL, the KL summed over
  the latent and averaged over the batch (VAAL's code also sums over the batch, which
  scales it with the batch size), for the labeled and the unlabeled batch, + the
  adversarial term BCE(D(mu_l), 1) + BCE(D(mu_u), 1) with weight 1.  Labeled and
  unlabeled items go through the VAE in one forward (BatchNorm sees both).
* **SRAAL**: the supervised head is a Linear on ``mu`` trained with cross-entropy on the
  labeled items (weight 1) together with the VAE; OUI uses the task model in eval mode on
  the discriminator step's unlabeled batch.  SRAAL's initial labeled pool by k-center
  greedy in the latent space is **not** reproduced: the loop draws one random initial set
  per trial for every strategy (differences must come from the methods alone), so SRAAL starts like the
  others.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..config.options import option
from ..models.modes import eval_mode
from ..scoring import oui
from ..seeding import on_device
from ..tasks import CLASSES, PROBABILITIES
from .base import OBJECTIVES, ModelInfo, Objective

if TYPE_CHECKING:
    from ..data import Inputs

@dataclass(frozen=True)
class VAEOptions:
    vae_latent: int = option(32, "latent size of the VAAL / SRAAL VAE", at_least=1)
    vae_width: int | None = option(None, "channels of the VAE's first conv, doubled per layer (VAAL: 128 -> "
                                   "128/256/512/1024; MLP VAE: hidden 4w, 2w); automatic: 128, or 16 for images of "
                                   "at most 16x16", at_least=1)
    vae_epochs: float = option(10.0, "VAAL / SRAAL training per cycle: ceil(vae_epochs x labeled / vae_batch_size) "
                               "iterations of 2 VAE steps + 1 discriminator step", above=0)
    vae_iterations: int | None = option(None, "VAAL / SRAAL iterations per cycle (2 VAE steps + 1 discriminator "
                                        "step each) instead of the --vae-epochs rule; VAAL's code runs 39062 on "
                                        "CIFAR-10 and CIFAR-100 (100 epochs of 50,000 images in batches of 128)",
                                        at_least=1)
    vae_batch_size: int = option(64, "labeled and unlabeled batch size of the VAAL / SRAAL VAE (each)", at_least=1)
    vae_lr: float = option(5e-4, "Adam learning rate of the VAAL / SRAAL VAE and discriminator", above=0)


VAE_STEPS = 2  # VAE steps per discriminator step (VAAL)
BETA = 1.0  # weight of the KL term (VAAL's beta)
ADVERSARY_WEIGHT = 1.0  # weight of the adversarial term in the VAE loss (VAAL's adversary_param)
DISCRIMINATOR_WIDTH = 512


def vae_image_size(height: int, width: int) -> int:
    """The side images are resized to inside the VAE: the smallest power of two >= the
    larger side, clamped to [16, 64] (four stride-2 layers need at least 16)."""
    side = max(height, width)
    return min(64, max(16, 1 << max(0, math.ceil(math.log2(side)))))


def default_vae_width(input_shape: tuple[int, ...]) -> int:
    """VAAL's 128, or 16 for images of at most 16x16 (the embedded digits)."""
    if len(input_shape) == 3 and max(input_shape[1:]) <= 16:
        return 16
    return 128


class ConvVAE(nn.Module):
    """VAAL's convolutional VAE on images resized to ``size x size`` (a multiple of 16)."""

    def __init__(self, channels: int, size: int, latent: int = 32, width: int = 128) -> None:
        super().__init__()
        if size % 16:
            raise ValueError(f"the VAE image size must be a multiple of 16, got {size}")
        self.size = size
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        c = channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = widths[-1] * (size // 16) ** 2
        self.fc_mu = nn.Linear(flat, latent)
        self.fc_logvar = nn.Linear(flat, latent)
        self.start = size // 8
        self.decoder_fc = nn.Linear(latent, widths[-1] * self.start**2)
        dec: list[nn.Module] = []
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):  # 8w->4w, 4w->2w, 2w->w
            dec += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        dec.append(nn.ConvTranspose2d(width, channels, 1))
        self.decoder = nn.Sequential(*dec)
        self._top = widths[-1]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input resized to the VAE's size (also the reconstruction target)."""
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.prepare(x))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_fc(z).view(-1, self._top, self.start, self.start))

    def forward(self, x: torch.Tensor, noise: torch.Tensor):
        """``(target, reconstruction, mu, logvar)``; ``z = mu + exp(logvar / 2) * noise``."""
        x = self.prepare(x)
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        return x, self.decode(mu + torch.exp(0.5 * logvar) * noise), mu, logvar


class MLPVAE(nn.Module):
    """The VAE for tabular rows: D -> 4w -> 2w -> (mu, logvar), decoder mirrored."""

    def __init__(self, features: int, latent: int = 32, width: int = 128) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(features, 4 * width), nn.ReLU(inplace=True),
            nn.Linear(4 * width, 2 * width), nn.ReLU(inplace=True),
        )
        self.fc_mu = nn.Linear(2 * width, latent)
        self.fc_logvar = nn.Linear(2 * width, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, 2 * width), nn.ReLU(inplace=True),
            nn.Linear(2 * width, 4 * width), nn.ReLU(inplace=True), nn.Linear(4 * width, features),
        )

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor):
        x = self.prepare(x)
        mu, logvar = self.encode(x)
        return x, self.decode(mu + torch.exp(0.5 * logvar) * noise), mu, logvar


class Discriminator(nn.Module):
    """latent -> 512 -> 512 -> 1 with ReLU; returns the logit of "labeled" (sigmoid = D)."""

    def __init__(self, latent: int = 32, width: int = DISCRIMINATOR_WIDTH) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent, width), nn.ReLU(inplace=True),
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, 1),
        )

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu).flatten()


def build_vae(input_shape: tuple[int, ...], latent: int, width: int) -> nn.Module:
    """A :class:`ConvVAE` for images (C, H, W), an :class:`MLPVAE` for rows (D,)."""
    if len(input_shape) == 3:
        channels, height, w = input_shape
        return ConvVAE(channels, vae_image_size(height, w), latent, width)
    features = 1
    for d in input_shape:
        features *= d
    return MLPVAE(features, latent, width)


def vae_loss(target: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = BETA) -> torch.Tensor:
    """MSE (mean over elements) + beta x KL(q(z|x) || N(0, I)) summed over the latent, mean over the batch."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()
    return F.mse_loss(recon, target) + beta * kl


def _batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless positions 0..n-1 in batches of ``min(batch, n)``, a fresh permutation per pass."""
    batch = min(batch, n)
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]


class VAALObjective(Objective):
    """VAE + discriminator trained in :meth:`after_training` (VAAL); see the module docstring."""

    name = "vaal"
    Options = VAEOptions
    #: what the ``vaal`` / ``sraal`` acquisitions look for
    has_discriminator = True

    def setup(self, model: nn.Module, info: ModelInfo) -> None:
        self.num_classes = info.num_classes
        latent = int(self.options.vae_latent)
        width = int(self.options.vae_width or default_vae_width(tuple(info.input_shape)))
        self.vae = build_vae(tuple(info.input_shape), latent, width)
        self.discriminator = Discriminator(latent)
        self.head = self.make_head(latent, info.num_classes)
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        self.to(device)

    def modules(self) -> dict[str, nn.Module]:
        mods = {"vae": self.vae, "discriminator": self.discriminator}
        if self.head is not None:
            mods["head"] = self.head
        return mods

    def vae_parameters(self) -> list[nn.Parameter]:
        """What the VAE optimiser trains: the VAE and, in SRAAL, the supervised head."""
        params = list(self.vae.parameters())
        if self.head is not None:
            params += list(self.head.parameters())
        return params

    # -- what SRAAL changes ---------------------------------------------------
    def make_head(self, latent: int, num_classes: int) -> nn.Module | None:
        """A supervised head on the latent (SRAAL), or None (VAAL)."""
        return None

    def supervised_loss(self, mu_labeled: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """An extra VAE loss on the labeled items' latent means (SRAAL's supervised head)."""
        return None

    def unlabeled_targets(self, model: nn.Module, x_unlabeled: torch.Tensor) -> torch.Tensor:
        """The discriminator's targets for unlabeled items: 0 in VAAL."""
        return torch.zeros(x_unlabeled.shape[0], device=x_unlabeled.device)

    # -- training -------------------------------------------------------------
    def after_training(self, model: nn.Module, inputs: Inputs, labeled: torch.Tensor, unlabeled: torch.Tensor,
                       gen: torch.Generator, labels: torch.Tensor) -> None:
        """Train the VAE and discriminator on labeled and unlabeled items (once per cycle).

        ``labels`` are the labels the oracle gave to ``labeled`` (used by SRAAL's supervised head).
        """
        if labeled.numel() == 0 or unlabeled.numel() == 0:
            return
        device = inputs.device
        labeled = labeled.to(device)
        unlabeled = unlabeled.to(device)
        labels = labels.to(device)
        batch = int(self.options.vae_batch_size)
        epochs = float(self.options.vae_epochs)
        lr = float(self.options.vae_lr)
        iterations = max(1, math.ceil(epochs * labeled.numel() / batch))
        if self.options.vae_iterations is not None:
            iterations = int(self.options.vae_iterations)
        dev_gen = on_device(gen, device)
        lab_batches = _batches(labeled.numel(), batch, gen)
        unl_batches = _batches(unlabeled.numel(), batch, gen)
        opt_vae = torch.optim.Adam(self.vae_parameters(), lr=lr)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr)
        self.train()
        latent = int(self.options.vae_latent)
        with eval_mode(model):  # the task model only supplies SRAAL's softmax, in eval mode
            try:
                for _ in range(iterations):
                    self.discriminator.requires_grad_(False)  # the VAE steps only move the VAE (and head)
                    for _ in range(VAE_STEPS):
                        li, ui = next(lab_batches).to(device), next(unl_batches).to(device)
                        x_l = inputs.train_batch(labeled[li], dev_gen)
                        x_u = inputs.train_batch(unlabeled[ui], dev_gen)
                        n_l = x_l.shape[0]
                        noise = torch.randn(n_l + x_u.shape[0], latent, generator=dev_gen, device=device)
                        target, recon, mu, logvar = self.vae(torch.cat([x_l, x_u]), noise)
                        loss = vae_loss(target[:n_l], recon[:n_l], mu[:n_l], logvar[:n_l]) + vae_loss(
                            target[n_l:], recon[n_l:], mu[n_l:], logvar[n_l:])
                        d = self.discriminator(mu)
                        ones = torch.ones_like(d)
                        loss = loss + ADVERSARY_WEIGHT * (
                            F.binary_cross_entropy_with_logits(d[:n_l], ones[:n_l])
                            + F.binary_cross_entropy_with_logits(d[n_l:], ones[n_l:]))
                        extra = self.supervised_loss(mu[:n_l], labels[li])
                        if extra is not None:
                            loss = loss + extra
                        opt_vae.zero_grad(set_to_none=True)
                        loss.backward()
                        opt_vae.step()
                    self.discriminator.requires_grad_(True)
                    mu = mu.detach()
                    with torch.no_grad():
                        t_u = self.unlabeled_targets(model, x_u).float()
                    d = self.discriminator(mu)
                    d_loss = (F.binary_cross_entropy_with_logits(d[:n_l], torch.ones_like(d[:n_l]))
                              + F.binary_cross_entropy_with_logits(d[n_l:], t_u))
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_d.step()
            finally:
                self.discriminator.requires_grad_(True)
                self.eval()

    # -- query ----------------------------------------------------------------
    @torch.no_grad()
    def discriminator_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of D(mu(x)) per item (higher = looks labeled); modules as they are (eval at query)."""
        mu, _ = self.vae.encode(x)  # type: ignore[operator]  # the VAE classes define encode
        return self.discriminator(mu).float()


class SRAALObjective(VAALObjective):
    """VAAL's networks + a supervised head on the latent; unlabeled discriminator targets ``1 - OUI``."""

    name = "sraal"
    needs = frozenset({PROBABILITIES, CLASSES})

    def make_head(self, latent: int, num_classes: int) -> nn.Module | None:
        return nn.Linear(latent, num_classes)

    def supervised_loss(self, mu_labeled: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert self.head is not None
        return F.cross_entropy(self.head(mu_labeled), y)

    def unlabeled_targets(self, model: nn.Module, x_unlabeled: torch.Tensor) -> torch.Tensor:
        """``1 - OUI`` of the task model's softmax (the model is in eval mode here)."""
        return 1 - oui(torch.softmax(model(x_unlabeled).float(), dim=-1))


OBJECTIVES.register("vaal", VAALObjective,
                    "VAE + discriminator on its latent, trained adversarially on labeled and unlabeled items (VAAL)")
OBJECTIVES.register("sraal", SRAALObjective,
                    "VAAL's networks + a supervised head; unlabeled discriminator targets 1 - OUI (SRAAL)")
