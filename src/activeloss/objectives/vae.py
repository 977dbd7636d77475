"""VAAL and SRAAL: a VAE and a discriminator on its latent, trained beside the task model.

One module for both methods:

* **VAAL** (Sinha, Ebrahimi and Darrell, Variational Adversarial Active Learning, ICCV
  2019): a VAE learns a latent space from labeled *and* unlabeled items while trying to
  make the discriminator believe every item is labeled; the discriminator learns to tell
  the labeled items (target 1) from the unlabeled ones (target 0) by their latent mean.
  Query: the candidates the discriminator finds least "labeled" (lowest ``D(mu)``).
* **SRAAL** (Zhang et al., State-Relabeling Adversarial Active Learning, CVPR 2020, as
  the survey describes it): a *unified representation generator* of two parts, the
  unsupervised image reconstructor (UIR: VAAL's VAE, on labeled and unlabeled items) and
  the supervised target learner (STL: a variational encoder whose latent ``z_s`` feeds a
  classifier trained on the labeled items); the discriminator reads the concatenation
  ``[mu_u, mu_s]`` of both latent means, and the unlabeled items' discriminator target is
  relabeled from 0 to ``1 - OUI``, where the uncertainty indicator OUI comes from the task
  model's softmax (:func:`oui`).

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
* **SRAAL**: the STL's encoder has the VAE encoder's architecture and its own weights
  (``--sraal-encoder own``, the default: two parts, as the survey has it) or reuses the
  VAE's convolutions / hidden layers with its own latent layers (``shared``: one encoder
  pass instead of two); its latent has ``--sraal-latent`` (32) dimensions, so the
  discriminator reads ``vae_latent + sraal_latent`` (64) numbers, through VAAL's
  512 -> 512 -> 1.  The STL's loss is the cross-entropy of a Linear(sraal_latent, C)
  classifier on the sampled ``z_s = mu_s + sigma_s * eps`` plus beta x KL(q(z_s|x) ||
  N(0, I)), both on the labeled batch, weighted by ``--sraal-supervised-weight`` (1); the
  generator loss is the UIR's VAE losses + that + the adversarial term, which pushes both
  parts (labeled and unlabeled items through both encoders).  OUI uses the task model in
  eval mode on the discriminator step's unlabeled batch.  The query takes the lowest
  ``D([mu_u, mu_s])``.  SRAAL's k-center initial pool is the loop's ``--initial-method
  kcenter`` (for every strategy of a trial alike; see ``activeloss.loop.driver``).
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


@dataclass(frozen=True)
class SRAALOptions(VAEOptions):
    sraal_latent: int = option(32, "latent size of SRAAL's supervised target learner; the discriminator reads its "
                               "latent mean concatenated with the VAE's (--vae-latent + --sraal-latent numbers)",
                               at_least=1)
    sraal_encoder: str = option("own", "encoder of SRAAL's supervised target learner: own (a second encoder of the "
                                "VAE's architecture, the survey's two-part generator) or shared (the VAE's "
                                "convolutions, or hidden layers for rows, with its own latent layers: cheaper)",
                                choices=("own", "shared"))
    sraal_supervised_weight: float = option(1.0, "weight of SRAAL's supervised target learner loss (cross-entropy of "
                                            "its classifier + KL of its latent, on the labeled items) in the "
                                            "generator loss", at_least=0)


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


def conv_encoder(channels: int, width: int) -> nn.Sequential:
    """VAAL's encoder body: four conv4x4 stride-2 layers of ``w, 2w, 4w, 8w`` channels with BN and
    ReLU, flattened."""
    layers: list[nn.Module] = []
    c = channels
    for w in (width, 2 * width, 4 * width, 8 * width):
        layers += [nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        c = w
    return nn.Sequential(*layers, nn.Flatten())


def mlp_encoder(features: int, width: int) -> nn.Sequential:
    """The MLP VAE's encoder body: D -> 4w -> 2w with ReLU."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(features, 4 * width), nn.ReLU(inplace=True),
        nn.Linear(4 * width, 2 * width), nn.ReLU(inplace=True),
    )


class ConvVAE(nn.Module):
    """VAAL's convolutional VAE on images resized to ``size x size`` (a multiple of 16)."""

    def __init__(self, channels: int, size: int, latent: int = 32, width: int = 128) -> None:
        super().__init__()
        if size % 16:
            raise ValueError(f"the VAE image size must be a multiple of 16, got {size}")
        self.size = size
        self.channels, self.width = channels, width
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.encoder = conv_encoder(channels, width)
        flat = widths[-1] * (size // 16) ** 2
        #: size of the encoder body's output (what ``fc_mu`` reads)
        self.hidden = flat
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

    def new_encoder(self) -> nn.Sequential:
        """A fresh encoder body of this VAE's architecture (SRAAL's supervised target learner)."""
        return conv_encoder(self.channels, self.width)

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
        self.features, self.width = features, width
        self.encoder = mlp_encoder(features, width)
        self.hidden = 2 * width
        self.fc_mu = nn.Linear(2 * width, latent)
        self.fc_logvar = nn.Linear(2 * width, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, 2 * width), nn.ReLU(inplace=True),
            nn.Linear(2 * width, 4 * width), nn.ReLU(inplace=True), nn.Linear(4 * width, features),
        )

    def new_encoder(self) -> nn.Sequential:
        """A fresh encoder body of this VAE's architecture (SRAAL's supervised target learner)."""
        return mlp_encoder(self.features, self.width)

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


VAE = ConvVAE | MLPVAE


class TargetLearner(nn.Module):
    """SRAAL's supervised target learner (STL): an encoder body (its own, or None to read the VAE's
    hidden features), fully connected layers to ``(mu_s, logvar_s)`` and a linear classifier on
    ``z_s``."""

    def __init__(self, encoder: nn.Module | None, hidden: int, latent: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_logvar = nn.Linear(hidden, latent)
        self.classifier = nn.Linear(latent, num_classes)

    def encode(self, x: torch.Tensor, shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu_s, logvar_s)`` of the VAE-prepared input ``x``; ``shared`` is the VAE's hidden
        output of ``x``, read when the STL has no encoder of its own."""
        h = shared if self.encoder is None else self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)


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


def build_vae(input_shape: tuple[int, ...], latent: int, width: int) -> VAE:
    """A :class:`ConvVAE` for images (C, H, W), an :class:`MLPVAE` for rows (D,)."""
    if len(input_shape) == 3:
        channels, height, w = input_shape
        return ConvVAE(channels, vae_image_size(height, w), latent, width)
    features = 1
    for d in input_shape:
        features *= d
    return MLPVAE(features, latent, width)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the latent, mean over the batch."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()


def vae_loss(target: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = BETA) -> torch.Tensor:
    """MSE (mean over elements) + beta x KL(q(z|x) || N(0, I)) summed over the latent, mean over the batch."""
    return F.mse_loss(recon, target) + beta * kl_divergence(mu, logvar)


def endless_batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
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
        self.discriminator = Discriminator(latent + self.extra_latent())
        self.build_extra(info)
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        self.to(device)

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "discriminator": self.discriminator}

    def generator_parameters(self) -> list[nn.Parameter]:
        """What the generator's optimiser trains: the VAE (and, in SRAAL, the target learner)."""
        return list(self.vae.parameters())

    # -- what SRAAL changes ---------------------------------------------------
    def extra_latent(self) -> int:
        """Numbers the discriminator reads beyond the VAE's latent mean (SRAAL: the STL's latent)."""
        return 0

    def build_extra(self, info: ModelInfo) -> None:
        """Build the networks beside the VAE and the discriminator (SRAAL's target learner)."""

    def generator_loss(self, x: torch.Tensor, n_labeled: int, y: torch.Tensor,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward of the generator on ``x`` (the first ``n_labeled`` rows labeled, with labels
        ``y``): its loss without the adversarial term, and the representation the discriminator
        reads.  VAAL: the VAE losses of the labeled and the unlabeled rows, and ``mu``."""
        noise = torch.randn(x.shape[0], int(self.options.vae_latent), generator=gen, device=x.device)
        target, recon, mu, logvar = self.vae(x, noise)
        n = n_labeled
        loss = vae_loss(target[:n], recon[:n], mu[:n], logvar[:n]) + vae_loss(target[n:], recon[n:], mu[n:],
                                                                                logvar[n:])
        return loss, mu

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminator reads for the inputs ``x``: VAAL's latent mean ``mu``."""
        return self.vae.encode(x)[0]

    def unlabeled_targets(self, model: nn.Module, x_unlabeled: torch.Tensor) -> torch.Tensor:
        """The discriminator's targets for unlabeled items: 0 in VAAL."""
        return torch.zeros(x_unlabeled.shape[0], device=x_unlabeled.device)

    # -- training -------------------------------------------------------------
    def after_training(self, model: nn.Module, inputs: Inputs, labeled: torch.Tensor, unlabeled: torch.Tensor,
                       gen: torch.Generator, labels: torch.Tensor) -> None:
        """Train the generator (VAE) and discriminator on labeled and unlabeled items (once per cycle).

        ``labels`` are the labels the oracle gave to ``labeled`` (used by SRAAL's target learner).
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
        lab_batches = endless_batches(labeled.numel(), batch, gen)
        unl_batches = endless_batches(unlabeled.numel(), batch, gen)
        opt_vae = torch.optim.Adam(self.generator_parameters(), lr=lr)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr)
        self.train()
        with eval_mode(model):  # the task model only supplies SRAAL's softmax, in eval mode
            try:
                for _ in range(iterations):
                    self.discriminator.requires_grad_(False)  # the VAE steps only move the generator
                    for _ in range(VAE_STEPS):
                        li, ui = next(lab_batches).to(device), next(unl_batches).to(device)
                        x_l = inputs.train_batch(labeled[li], dev_gen)
                        x_u = inputs.train_batch(unlabeled[ui], dev_gen)
                        n_l = x_l.shape[0]
                        loss, rep = self.generator_loss(torch.cat([x_l, x_u]), n_l, labels[li], dev_gen)
                        d = self.discriminator(rep)
                        ones = torch.ones_like(d)
                        loss = loss + ADVERSARY_WEIGHT * (
                            F.binary_cross_entropy_with_logits(d[:n_l], ones[:n_l])
                            + F.binary_cross_entropy_with_logits(d[n_l:], ones[n_l:]))
                        opt_vae.zero_grad(set_to_none=True)
                        loss.backward()
                        opt_vae.step()
                    self.discriminator.requires_grad_(True)
                    rep = rep.detach()
                    with torch.no_grad():
                        t_u = self.unlabeled_targets(model, x_u).float()
                    d = self.discriminator(rep)
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
        """Logit of D(representation(x)) per item (higher = looks labeled); modules as they are (eval at query)."""
        return self.discriminator(self.representation(x)).float()


class SRAALObjective(VAALObjective):
    """SRAAL's two-part generator (VAE + supervised target learner), a discriminator on ``[mu_u, mu_s]``
    and unlabeled discriminator targets ``1 - OUI``; see the module docstring."""

    name = "sraal"
    Options = SRAALOptions
    needs = frozenset({PROBABILITIES, CLASSES})

    def extra_latent(self) -> int:
        return int(self.options.sraal_latent)

    def build_extra(self, info: ModelInfo) -> None:
        own = self.options.sraal_encoder == "own"
        self.target_learner = TargetLearner(self.vae.new_encoder() if own else None, self.vae.hidden,
                                            int(self.options.sraal_latent), info.num_classes)

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "target_learner": self.target_learner}

    def generator_parameters(self) -> list[nn.Parameter]:
        return super().generator_parameters() + list(self.target_learner.parameters())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(target, mu_u, logvar_u, mu_s, logvar_s)`` of the inputs ``x``: the reconstruction target
        (``x`` as the VAE sees it), the UIR's (VAE's) latent and the STL's."""
        target = self.vae.prepare(x)
        h = self.vae.encoder(target)
        mu_s, logvar_s = self.target_learner.encode(target, h)
        return target, self.vae.fc_mu(h), self.vae.fc_logvar(h), mu_s, logvar_s

    def generator_loss(self, x: torch.Tensor, n_labeled: int, y: torch.Tensor,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The UIR's VAE losses (labeled and unlabeled rows) + ``--sraal-supervised-weight`` x the
        STL's loss (cross-entropy of its classifier on the sampled ``z_s`` + beta x KL, labeled rows),
        and the unified representation ``[mu_u, mu_s]``."""
        n = n_labeled
        noise = torch.randn(x.shape[0], int(self.options.vae_latent), generator=gen, device=x.device)
        noise_s = torch.randn(n, int(self.options.sraal_latent), generator=gen, device=x.device)
        target, mu, logvar, mu_s, logvar_s = self.encode(x)
        recon = self.vae.decode(mu + torch.exp(0.5 * logvar) * noise)
        unsupervised = vae_loss(target[:n], recon[:n], mu[:n], logvar[:n]) + vae_loss(target[n:], recon[n:], mu[n:],
                                                                                        logvar[n:])
        z_s = mu_s[:n] + torch.exp(0.5 * logvar_s[:n]) * noise_s
        supervised = (F.cross_entropy(self.target_learner.classifier(z_s), y)
                      + BETA * kl_divergence(mu_s[:n], logvar_s[:n]))
        loss = unsupervised + float(self.options.sraal_supervised_weight) * supervised
        return loss, torch.cat([mu, mu_s], dim=1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The unified representation ``[mu_u, mu_s]`` the discriminator reads."""
        _, mu, _, mu_s, _ = self.encode(x)
        return torch.cat([mu, mu_s], dim=1)

    def unlabeled_targets(self, model: nn.Module, x_unlabeled: torch.Tensor) -> torch.Tensor:
        """``1 - OUI`` of the task model's softmax (the model is in eval mode here)."""
        return 1 - oui(torch.softmax(model(x_unlabeled).float(), dim=-1))


OBJECTIVES.register("vaal", VAALObjective,
                    "VAE + discriminator on its latent, trained adversarially on labeled and unlabeled items (VAAL)")
OBJECTIVES.register("sraal", SRAALObjective,
                    "a VAE and a supervised target learner whose latents, concatenated, feed the discriminator; "
                    "unlabeled discriminator targets 1 - OUI (SRAAL)")
