"""Known answers for the baseline strategies: Core-set, MC-Dropout (BALD, MC entropy), BADGE,
VAAL and SRAAL.  Small hand-built models and data; a few seconds in all."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activeloss import scoring
from activeloss.acquisitions import QueryContext, make_acquisition
from activeloss.acquisitions.bayesian import BALDAcquisition, MCDropoutOptions
from activeloss.acquisitions.diversity import (
    gradient_embedding_factors,
    gradient_embeddings,
)
from activeloss.config import Settings
from activeloss.data import Inputs
from activeloss.errors import ConfigError
from activeloss.models import build
from activeloss.objectives import OBJECTIVES, ModelInfo, Objective, make_objective
from activeloss.objectives.dropout import SeededDropout, dropout_modules
from activeloss.objectives.vae import (
    MLPVAE,
    ConvVAE,
    SRAALOptions,
    VAEOptions,
    build_vae,
    kl_divergence,
    vae_image_size,
)
from activeloss.scoring import kmeans_pp_factored, oui
from activeloss.strategies import STRATEGIES, get_strategy
from activeloss.tasks import ClassificationTask

from conftest import make_tiny_dataset

DATA = make_tiny_dataset(n_train=60, n_test=12, classes=3, size=8)
TASK = ClassificationTask()


def _info(num_classes, taps, input_shape):
    return ModelInfo(TASK, tuple(taps), tuple(input_shape), num_classes)


def mc_probs(ctx, passes=None):
    """The (T, N, C) MC-Dropout probabilities the bald acquisition scores (``passes`` None: its default)."""
    options = MCDropoutOptions() if passes is None else MCDropoutOptions(mc_passes=passes)
    return BALDAcquisition(options).mc_probs(ctx)


def _rows_inputs(x: torch.Tensor) -> Inputs:
    """Inputs whose normalised rows are ``x`` itself (mean 0, std 1)."""
    n, d = x.shape
    return Inputs(x, torch.zeros(n, dtype=torch.long), x[:1], torch.zeros(1, dtype=torch.long),
                  torch.zeros(1, d), torch.ones(1, d), (), 0, torch.device("cpu"))


def _image_inputs(data=DATA) -> Inputs:
    return Inputs.from_dataset(data, torch.device("cpu"), (), 0)


def _ctx(model, inputs, candidates, labeled, objective=None, seed=0, batch_size=16):
    return QueryContext(model, objective or Objective(), inputs, torch.as_tensor(candidates), torch.as_tensor(labeled),
                        torch.Generator().manual_seed(seed), batch_size, TASK)


class Identity(nn.Module):
    """features(x) = x, a Linear classifier: lets a test choose the features by hand."""

    def __init__(self, dim: int, classes: int = 2) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, classes)

    def features(self, x):
        return x

    def forward(self, x):
        return self.classifier(self.features(x))


def _cnn(seed=0, objective_name=None):
    torch.manual_seed(seed)
    model = build("cnn", DATA.num_classes, DATA.input_shape)
    objective = make_objective(objective_name or "none")
    objective.setup(model, _info(DATA.num_classes, model.taps, DATA.input_shape))
    model.eval()
    objective.eval()
    return model, objective


# -- Core-set ---------------------------------------------------------------

def test_coreset_picks_the_farthest_points_on_a_line():
    points = torch.tensor([[0.0], [1.0], [3.0], [4.0], [7.0], [9.0], [10.0]])
    ctx = _ctx(Identity(1), _rows_inputs(points), candidates=[1, 2, 3, 4, 5, 6], labeled=[0])
    sel = make_acquisition("coreset").select(ctx, 3)
    # 10 is farthest from 0; then 4 (4 from 0, 6 from 10); then 7 (3 from 4, 3 from 10)
    assert sel.indices.tolist() == [6, 3, 4]
    assert torch.allclose(sel.scores, torch.tensor([10.0, 4.0, 3.0]))


def test_coreset_uses_every_labeled_item_as_a_centre():
    points = torch.tensor([[0.0], [2.0], [5.0], [6.0], [10.0]])
    ctx = _ctx(Identity(1), _rows_inputs(points), candidates=[1, 2, 3], labeled=[0, 4])
    sel = make_acquisition("coreset").select(ctx, 1)
    assert sel.indices.tolist() == [2]  # 5 is 5 from both centres; 6 is 4 from 10
    assert sel.scores.tolist() == [5.0]


# -- MC-Dropout -------------------------------------------------------------

def test_mc_dropout_objective_wraps_the_same_classifier():
    torch.manual_seed(0)
    model = build("cnn", 3, (1, 8, 8))
    linear = model.classifier
    x = _image_inputs().train_batch(torch.arange(5))
    model.eval()
    before = model(x)
    make_objective("mc-dropout").setup(model, _info(3, model.taps, (1, 8, 8)))
    assert isinstance(model.classifier, nn.Sequential)
    assert isinstance(model.classifier[0], SeededDropout) and model.classifier[0].p == 0.5
    assert model.classifier[1] is linear
    model.eval()
    assert torch.equal(model(x), before)  # eval mode: dropout is the identity
    assert "classifier.1.weight" in model.state_dict()


def test_mc_dropout_objective_leaves_models_with_dropout_alone():
    model = nn.Sequential()
    model.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(4, 2))
    clf = model.classifier
    make_objective("mc-dropout").setup(model, _info(2, (), (4,)))
    assert model.classifier is clf and len(dropout_modules(model)) == 1


def test_seeded_dropout_masks_replay_after_a_checkpoint():
    drop = SeededDropout(0.5, seed=7).train()
    x = torch.ones(4, 32, requires_grad=True)
    drop(x)
    state = {k: v for k, v in nn.Sequential(drop).state_dict().items()}
    second = drop(x)
    again = SeededDropout(0.5, seed=0).train()
    nn.Sequential(again).load_state_dict(state)
    assert torch.equal(again(x), second)
    assert not torch.equal(drop(x), second)  # the next call draws a new mask
    assert set(torch.unique(second.detach()).tolist()) <= {0.0, 2.0}


def test_batchnorm_stays_in_eval_during_mc_passes():
    """Generic path (the model has its own dropout): BN uses running stats, dropout is live."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5))
            self.classifier = nn.Linear(16, 3)

        def features(self, x):
            return self.body(x)

        def forward(self, x):
            return self.classifier(self.features(x))

    model = Net()
    with torch.no_grad():
        model.body[2].running_mean.uniform_(-1, 1)
    bn = model.body[2]
    seen = []
    bn.register_forward_hook(lambda m, i, o: seen.append((m.training, model.body[4].training)))
    stats = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    model.eval()
    rng = torch.get_rng_state()
    probs = mc_probs(_ctx(model, _image_inputs(), torch.arange(20), torch.arange(20, 30)), passes=4)
    assert probs.shape == (4, 20, 3)
    assert seen and all(bn_training is False and drop_training is True for bn_training, drop_training in seen)
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert torch.equal(bn.num_batches_tracked, stats[2])
    assert not torch.allclose(probs[0], probs[1])  # the passes differ
    assert not model.training and not model.body[4].training  # modes restored
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    again = mc_probs(_ctx(model, _image_inputs(), torch.arange(20), torch.arange(20, 30)), passes=4)
    assert torch.equal(probs, again)  # seeded from ctx.generator


def test_mc_fast_path_keeps_batchnorm_in_eval_and_is_reproducible():
    model, objective = _cnn(objective_name="mc-dropout")
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    modes = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, i, o: modes.append(mod.training))
    probs = mc_probs(_ctx(model, _image_inputs(), torch.arange(30), torch.arange(30, 40), objective), passes=6)
    assert probs.shape == (6, 30, 3)
    assert modes and not any(modes)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    assert not torch.allclose(probs[0], probs[1])
    again = mc_probs(_ctx(model, _image_inputs(), torch.arange(30), torch.arange(30, 40), objective), passes=6)
    assert torch.equal(probs, again)
    other = mc_probs(_ctx(model, _image_inputs(), torch.arange(30), torch.arange(30, 40), objective, seed=1), passes=6)
    assert not torch.equal(probs, other)


def test_mc_fast_path_is_unbiased_dropout():
    """Inverted dropout before a Linear: the mean logit over many passes is the eval logit."""
    torch.manual_seed(0)
    model = Identity(8, 3)
    make_objective("mc-dropout").setup(model, _info(3, (), (8,)))
    x = torch.randn(5, 8)
    ctx = _ctx(model, _rows_inputs(x), torch.arange(5), torch.tensor([], dtype=torch.long))
    probs = mc_probs(ctx, passes=4000)
    assert probs.shape == (4000, 5, 3)
    # log p0 - log p1 is the logit gap of each pass; its mean over passes -> the eval gap
    mean_logit_gap = (torch.log(probs[..., 0]) - torch.log(probs[..., 1])).mean(0)
    eval_logits = model.classifier[1](x)
    assert torch.allclose(mean_logit_gap, eval_logits[:, 0] - eval_logits[:, 1], atol=0.15)


def test_bald_is_zero_when_all_passes_agree():
    model, objective = _cnn(objective_name="mc-dropout")
    with torch.no_grad():
        model.classifier[1].weight.zero_()  # logits = bias whatever the mask
    ctx = _ctx(model, _image_inputs(), torch.arange(20), torch.arange(20, 30), objective)
    probs = mc_probs(ctx)
    assert probs.shape[0] == 10  # --mc-passes default
    assert torch.allclose(probs[0], probs[-1])
    sel = make_acquisition("bald").select(ctx, 5)
    assert torch.all(sel.scores.abs() < 1e-6)
    assert torch.allclose(scoring.bald(probs), torch.zeros(20), atol=1e-6)


def test_bald_without_the_objective_applies_dropout_at_query_time_only():
    model, _ = _cnn()  # objective none: no dropout anywhere
    assert not dropout_modules(model)
    sel = make_acquisition("bald").select(_ctx(model, _image_inputs(), torch.arange(40), torch.arange(40, 50)), 5)
    assert not dropout_modules(model) and isinstance(model.classifier, nn.Linear)
    assert torch.all(sel.scores[:-1] >= sel.scores[1:]) and sel.scores[0] > 0
    assert get_strategy("none+bald").objective == "none"


def test_mc_entropy_ranks_by_the_entropy_of_the_mean():
    model, objective = _cnn(objective_name="mc-dropout")
    ctx = _ctx(model, _image_inputs(), torch.arange(30), torch.arange(30, 40), objective)
    sel = make_acquisition("mc-entropy").select(ctx, 4)
    expected = scoring.mc_entropy(mc_probs(ctx))
    assert torch.allclose(sel.scores, expected.sort(descending=True).values[:4])


# -- BADGE --------------------------------------------------------------------

@pytest.mark.parametrize("objective_name", ["none", "mc-dropout"])
def test_badge_embedding_is_the_cross_entropy_gradient_at_the_predicted_label(objective_name):
    model, objective = _cnn(seed=3, objective_name=objective_name)
    idx = torch.arange(6)
    a, h = gradient_embedding_factors(_ctx(model, _image_inputs(), idx, torch.arange(6, 9), objective))
    emb = gradient_embeddings(a, h, bias=True)
    linear = model.classifier if isinstance(model.classifier, nn.Linear) else model.classifier[1]
    x = _image_inputs().train_batch(idx)
    for i in range(6):
        logits = model(x[i : i + 1])
        loss = F.cross_entropy(logits, logits.argmax(dim=1))
        gw, gb = torch.autograd.grad(loss, [linear.weight, linear.bias])
        assert torch.allclose(emb[i], torch.cat([gw.flatten(), gb]), atol=1e-6)


def _kmeans_pp_reference(emb: torch.Tensor, k: int, gen: torch.Generator) -> list[int]:
    """BADGE's seeding on materialised embeddings: largest norm first, then D^2 sampling."""
    emb = emb.double()
    picks = [int(emb.norm(dim=1).argmax())]
    while len(picks) < k:
        d2 = torch.cdist(emb, emb[picks]).pow(2).amin(dim=1)
        d2[picks] = 0
        picks.append(int(torch.multinomial(d2, 1, generator=gen)))
    return picks


def test_badge_factored_seeding_matches_seeding_on_the_materialised_embeddings():
    torch.manual_seed(0)
    for bias in (False, True):
        a, h = torch.randn(40, 4), torch.randn(40, 7)
        if bias:
            h[:, -1] = 1.0
        emb = gradient_embeddings(a, h, bias=bias)
        picks = kmeans_pp_factored(a, h, 12, torch.Generator().manual_seed(3))
        assert picks.tolist() == _kmeans_pp_reference(emb, 12, torch.Generator().manual_seed(3))
    everything = kmeans_pp_factored(a, h, 40, torch.Generator().manual_seed(0))
    assert sorted(everything.tolist()) == list(range(40))


def test_badge_picks_k_distinct_even_with_duplicate_embeddings():
    a = torch.tensor([[0.9, -0.9]] * 5 + [[-0.5, 0.5]] * 5 + [[0.1, -0.1]] * 5)
    h = torch.tensor([[1.0, 2.0, 1.0]] * 15)
    for seed in range(5):
        picks = kmeans_pp_factored(a, h, 3, torch.Generator().manual_seed(seed))
        assert sorted(p // 5 for p in picks.tolist()) == [0, 1, 2]  # one per group of duplicates
        picks = kmeans_pp_factored(a, h, 12, torch.Generator().manual_seed(seed))
        assert picks.unique().numel() == 12
    zero = kmeans_pp_factored(torch.zeros(6, 3), torch.ones(6, 2), 6, torch.Generator().manual_seed(0))
    assert sorted(zero.tolist()) == list(range(6))


def test_badge_acquisition_is_seeded():
    model, _ = _cnn()
    pick = lambda seed: make_acquisition("badge").select(
        _ctx(model, _image_inputs(), torch.arange(50), torch.arange(50, 60), seed=seed), 8).indices
    assert torch.equal(pick(0), pick(0))
    assert pick(0).unique().numel() == 8


# -- VAAL / SRAAL ---------------------------------------------------------------

def test_vae_sizes():
    assert [vae_image_size(s, s) for s in (8, 16, 28, 32, 48, 224)] == [16, 16, 32, 32, 64, 64]
    for shape in ((1, 8, 8), (1, 28, 28), (3, 32, 32)):
        vae = build_vae(shape, 32, 4)
        assert isinstance(vae, ConvVAE)
        x = torch.randn(3, *shape)
        target, recon, mu, _ = vae(x, torch.zeros(3, 32))
        assert recon.shape == target.shape == (3, shape[0], vae.size, vae.size) and mu.shape == (3, 32)
    vae = build_vae((13,), 32, 8)
    assert isinstance(vae, MLPVAE)
    target, recon, mu, _ = vae(torch.randn(4, 13), torch.zeros(4, 32))
    assert recon.shape == (4, 13) and mu.shape == (4, 32)


def _easy_split(swap: bool):
    """Labeled items are class-0 images (bright left band), unlabeled ones class-2 (right
    band), or the other way round: a random discriminator ranks one way or the other, only
    a trained one ranks both ways."""
    data = make_tiny_dataset(n_train=120, n_test=12, classes=3, size=8, seed=1)
    first = torch.nonzero(data.y_train == 0).flatten()
    second = torch.nonzero(data.y_train == 2).flatten()
    return (data, second, first) if swap else (data, first, second)


@pytest.mark.parametrize(("name", "swap"), [("vaal", True), ("sraal", False)])
def test_adversarial_objective_learns_to_tell_labeled_from_unlabeled(name, swap):
    data, labeled, unlabeled = _easy_split(swap=swap)
    torch.manual_seed(0)
    model = build("cnn", 3, data.input_shape)
    objective = make_objective(name, OBJECTIVES.get(name).Options(vae_width=4, vae_epochs=30, vae_batch_size=20))
    objective.setup(model, _info(3, model.taps, data.input_shape))
    objective.eval()
    inputs = _image_inputs(data)

    def auc():
        """Ranking accuracy of D between labeled and unlabeled items (0.5 is chance).  The
        VAE's adversarial term fights the separation, so D is not calibrated, but it ranks."""
        d_lab = objective.discriminator_logits(inputs.train_batch(labeled))
        d_unl = objective.discriminator_logits(inputs.train_batch(unlabeled))
        return float((d_lab[:, None] > d_unl[None, :]).float().mean())

    untrained = auc()
    objective.after_training(model, inputs, labeled, unlabeled, torch.Generator().manual_seed(0), data.y_train[labeled])
    assert not objective.vae.training and not objective.discriminator.training
    assert untrained < 0.5  # with this seed and split the untrained discriminator ranks the wrong way
    assert auc() > 0.9
    # the acquisition queries the lowest D: the unlabeled-looking items
    candidates = torch.cat([labeled[:10], unlabeled[:10]])
    sel = make_acquisition(name).select(_ctx(model, inputs, candidates, labeled[10:], objective), 10)
    assert torch.all(sel.scores[:-1] >= sel.scores[1:])
    assert len(set(sel.indices.tolist()) & set(unlabeled[:10].tolist())) >= 8
    assert torch.allclose(sel.scores, -objective.discriminator_logits(inputs.train_batch(sel.indices)), atol=1e-5)


def test_adversarial_training_is_reproducible_and_works_on_rows():
    x = torch.randn(40, 6)
    inputs = _rows_inputs(x)
    inputs.y_train = torch.arange(40) % 2
    options = SRAALOptions(vae_width=4, vae_epochs=3, vae_batch_size=8)

    def trained():
        torch.manual_seed(0)
        model = Identity(6, 2)
        objective = make_objective("sraal", options)
        objective.setup(model, _info(2, (), (6,)))
        objective.after_training(model, inputs, torch.arange(10), torch.arange(10, 40),
                                 torch.Generator().manual_seed(5), inputs.y_train[:10])
        return objective

    a, b = trained(), trained()
    for name, module in a.modules().items():
        for (k, v), w in zip(module.state_dict().items(), b.modules()[name].state_dict().values()):
            assert torch.equal(v, w), (name, k)
    assert set(a.modules()) == {"vae", "discriminator", "target_learner"}


def test_oui_against_hand_computations():
    v = torch.tensor([
        [0.7, 0.1, 0.1, 0.1],  # the rest spread evenly: var = minVar, OUI = 1 - max = 0.3
        [0.5, 0.5, 0.0, 0.0],  # minVar = 1/48, var = 1/16: ratio 1/3, OUI = 1 - 0.5/3
        [1.0, 0.0, 0.0, 0.0],  # one-hot: var = minVar = 3/16, OUI = 0
        [0.25, 0.25, 0.25, 0.25],  # uniform: var = 0, ratio taken as 1, OUI = 1 - 1/4
        [0.4, 0.3, 0.2, 0.1],
    ])
    c = 4
    top, rest = 0.4, [0.3, 0.2, 0.1]
    min_var = ((top - 1 / c) ** 2 + (c - 1) * ((1 - top) / (c - 1) - 1 / c) ** 2) / c
    var = sum((p - 1 / c) ** 2 for p in [top, *rest]) / c
    expected = torch.tensor([0.3, 1 - 0.5 / 3, 0.0, 0.75, 1 - min_var / var * top])
    assert torch.allclose(oui(v), expected, atol=1e-6)
    random = oui(torch.softmax(3 * torch.randn(100, 10), dim=1))
    assert torch.all((random >= 0) & (random < 1))


def test_sraal_discriminator_targets_are_one_minus_oui():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1], [1.0, 1e-12, 1e-12, 1e-12]]))

    x = torch.zeros(2, 5)
    sraal, vaal = make_objective("sraal"), make_objective("vaal")
    assert torch.allclose(sraal.unlabeled_targets(Fixed(), x), torch.tensor([0.7, 1.0]), atol=1e-5)
    assert torch.equal(vaal.unlabeled_targets(Fixed(), x), torch.zeros(2))


def test_sraal_trains_the_discriminator_on_soft_targets(monkeypatch):
    """The discriminator step sees targets 1 (labeled) and 1 - OUI (unlabeled)."""
    from activeloss.objectives import vae as vae_module

    seen = []
    real = F.binary_cross_entropy_with_logits

    def spy(logits, target, *args, **kw):
        seen.append(target.detach().clone())
        return real(logits, target, *args, **kw)

    monkeypatch.setattr(vae_module.F, "binary_cross_entropy_with_logits", spy)
    x = torch.randn(12, 5)
    inputs = _rows_inputs(x)
    torch.manual_seed(0)
    model = Identity(5, 3)
    objective = make_objective("sraal", SRAALOptions(vae_width=2, vae_epochs=1, vae_batch_size=4))
    objective.setup(model, _info(3, (), (5,)))
    objective.after_training(model, inputs, torch.arange(4), torch.arange(4, 12), torch.Generator().manual_seed(0),
                             inputs.y_train[:4])
    expected = 1 - oui(torch.softmax(model(x[4:]), dim=1))
    targets = torch.cat(seen)
    assert torch.all((targets == 1) | torch.isclose(targets[:, None], expected[None, :], atol=1e-6).any(1))
    assert torch.any(targets < 1)


def _sraal(options, classes=3):
    torch.manual_seed(0)
    model = build("cnn", classes, DATA.input_shape)
    objective = make_objective("sraal", options)
    objective.setup(model, _info(classes, model.taps, DATA.input_shape))
    objective.eval()
    return model, objective


@pytest.mark.parametrize("encoder", ["own", "shared"])
def test_sraal_discriminator_reads_the_concatenation_of_both_latent_parts(encoder):
    """SRAAL's unified representation is [mu_u, mu_s]: the VAE's (UIR's) latent mean, then the
    supervised target learner's; the discriminator reads vae_latent + sraal_latent numbers, and a
    change in the supervised part alone changes its input and its output."""
    options = SRAALOptions(vae_width=4, vae_latent=5, sraal_latent=3, sraal_encoder=encoder)
    _, objective = _sraal(options)
    stl = objective.target_learner
    assert objective.discriminator.net[0].in_features == 8
    assert (stl.encoder is None) == (encoder == "shared")
    x = _image_inputs().train_batch(torch.arange(6))
    with torch.no_grad():
        rep = objective.representation(x)
        prepared = objective.vae.prepare(x)
        hidden = objective.vae.encoder(prepared) if encoder == "shared" else stl.encoder(prepared)
        assert rep.shape == (6, 8)
        assert torch.allclose(rep[:, :5], objective.vae.encode(x)[0])
        assert torch.allclose(rep[:, 5:], stl.fc_mu(hidden))
        logits = objective.discriminator_logits(x)
        assert torch.allclose(logits, objective.discriminator(rep))
        stl.fc_mu.bias.add_(1.0)
        changed = objective.representation(x)
        assert torch.equal(changed[:, :5], rep[:, :5])
        assert torch.allclose(changed[:, 5:], rep[:, 5:] + 1)
        assert not torch.allclose(objective.discriminator_logits(x), logits)
    # VAAL's discriminator reads the VAE's latent mean alone
    vaal = make_objective("vaal", VAEOptions(vae_width=4, vae_latent=5))
    vaal.setup(build("cnn", 3, DATA.input_shape), _info(3, (), DATA.input_shape))
    assert vaal.discriminator.net[0].in_features == 5


def test_sraal_trains_both_parts_and_the_discriminator_on_their_concatenation():
    """In training, every discriminator forward reads [mu_u, mu_s] (vae_latent + sraal_latent wide);
    the target learner's classifier learns from the labeled items' cross-entropy alone, so it stays
    put when --sraal-supervised-weight is 0, while its encoder still moves (the adversarial term)."""
    data = DATA
    inputs = _image_inputs(data)
    labeled, unlabeled = torch.arange(0, 20), torch.arange(20, 60)

    def trained(weight):
        model, objective = _sraal(SRAALOptions(vae_width=4, vae_latent=5, sraal_latent=3, vae_epochs=2,
                                               vae_batch_size=8, sraal_supervised_weight=weight))
        widths = []
        objective.discriminator.register_forward_pre_hook(lambda m, args: widths.append(args[0].shape[1]))
        before = {k: v.clone() for k, v in objective.target_learner.state_dict().items()}
        objective.after_training(model, inputs, labeled, unlabeled, torch.Generator().manual_seed(0),
                                 data.y_train[labeled])
        after = objective.target_learner.state_dict()
        moved = {k for k, v in before.items() if not torch.equal(v, after[k])}
        return widths, moved

    widths, moved = trained(1.0)
    assert widths and set(widths) == {8}
    assert {"classifier.weight", "classifier.bias", "fc_mu.weight"} <= moved
    _, moved = trained(0.0)
    assert "fc_mu.weight" in moved and not {"classifier.weight", "classifier.bias"} & moved


def test_sraal_generator_loss_against_its_parts():
    """The generator loss is the VAE losses of the labeled and unlabeled rows + the weight x (the
    classifier's cross-entropy on the sampled z_s + KL of the STL's latent, labeled rows only)."""
    from activeloss.objectives.vae import vae_loss

    options = SRAALOptions(vae_width=4, vae_latent=5, sraal_latent=3, sraal_supervised_weight=0.5)
    _, objective = _sraal(options)
    x = _image_inputs().train_batch(torch.arange(10))
    y = DATA.y_train[:4]
    with torch.no_grad():
        loss, rep = objective.generator_loss(x, 4, y, torch.Generator().manual_seed(3))
        gen = torch.Generator().manual_seed(3)
        noise, noise_s = torch.randn(10, 5, generator=gen), torch.randn(4, 3, generator=gen)
        target, recon, mu, logvar = objective.vae(x, noise)
        stl = objective.target_learner
        mu_s, logvar_s = stl.fc_mu(stl.encoder(target)), stl.fc_logvar(stl.encoder(target))
        z_s = mu_s[:4] + torch.exp(0.5 * logvar_s[:4]) * noise_s
        expected = (vae_loss(target[:4], recon[:4], mu[:4], logvar[:4])
                    + vae_loss(target[4:], recon[4:], mu[4:], logvar[4:])
                    + 0.5 * (F.cross_entropy(stl.classifier(z_s), y) + kl_divergence(mu_s[:4], logvar_s[:4])))
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(rep, torch.cat([mu, mu_s], dim=1))


def test_discriminator_acquisition_needs_a_discriminator():
    """A pair without a discriminator is refused when the strategy is named, before any training."""
    from activeloss.strategies import get_strategy

    for pair in ("none+vaal", "lossnet+sraal"):
        with pytest.raises(ConfigError, match="vaal, sraal"):
            get_strategy(pair)
    assert get_strategy("sraal+vaal").acquisition == "vaal"


def test_registry():
    pairs = {n: (STRATEGIES.get(n).objective, STRATEGIES.get(n).acquisition, "classification" in STRATEGIES.get(n).main_for)
             for n in ("coreset", "bald", "mc-entropy", "badge", "vaal", "sraal")}
    assert pairs == {
        "coreset": ("none", "coreset", True), "bald": ("mc-dropout", "bald", True),
        "mc-entropy": ("mc-dropout", "mc-entropy", False), "badge": ("none", "badge", True),
        "vaal": ("vaal", "vaal", False), "sraal": ("sraal", "sraal", False),
    }
    assert all(STRATEGIES.get(n).reference for n in pairs)
    assert get_strategy("lossnet+badge").acquisition == "badge"


def test_interrupted_and_resumed_runs_match_for_dropout_and_vae_training(tmp_path, tiny_npz, monkeypatch):
    """The inserted dropout's masks and the VAE's training are seeded per cycle and
    checkpointed, so a run stopped between any two steps of a cycle and resumed matches an
    uninterrupted one: here after a cycle's labels (the next fit warm-starts from the
    checkpoint), after a fit (evaluation and query use the checkpointed model) and after a
    query (its batch is pending when the run resumes)."""
    import csv
    import sqlite3

    from activeloss.loop import experiment
    from activeloss.store import Store

    def settings(out):
        return Settings.from_dict({
            "dataset": f"npz:{tiny_npz}", "strategies": ["bald", "sraal"], "trials": 1, "cycles": 3, "initial": 20,
            "budget": 10, "subset": 0, "epochs": 2, "batch_size": 16, "model": "cnn", "vae_width": 4, "vae_epochs": 2,
            "out": str(out),
        })

    def rows(out):
        with open(out / "results.csv") as f:
            results = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in csv.DictReader(f)]
        db = sqlite3.connect(out / "store.sqlite")
        queries = db.execute("SELECT r.strategy, q.cycle, q.rank, q.item, q.score FROM queries q "
                             "JOIN runs r ON r.id = q.run_id ORDER BY 1, 2, 3").fetchall()
        labels = db.execute("SELECT r.strategy, l.item, l.cycle, l.label, l.source FROM labels l "
                            "JOIN runs r ON r.id = l.run_id ORDER BY 1, 2").fetchall()
        db.close()
        return results, queries, labels

    experiment.run(settings(tmp_path / "ref"), progress=False)
    # (step, cycle) after which to stop, in the order the steps come: bald's first labels taught
    # by the oracle, bald's second fit, then sraal's first query
    stops = [("add_labels", 1), ("record_fit", 1), ("record_query", 0)]

    def stopping(name):
        real = getattr(Store, name)

        def step(self, run_id, cycle, *args, **kw):
            real(self, run_id, cycle, *args, **kw)
            if stops and stops[0] == (name, cycle):
                stops.pop(0)
                raise KeyboardInterrupt

        return step

    for name in ("add_labels", "record_fit", "record_query"):
        monkeypatch.setattr(Store, name, stopping(name))
    interruptions = 0
    while stops:
        with pytest.raises(KeyboardInterrupt):
            experiment.run(settings(tmp_path / "cut"), resume=(tmp_path / "cut").exists(), progress=False)
        interruptions += 1
        assert interruptions <= 3
    monkeypatch.undo()
    cut = Store.in_folder(tmp_path / "cut")
    assert [len(cut.pending(r["id"])) for r in cut.runs()] == [0, 10]  # sraal stopped with its batch pending
    cut.close()
    experiment.run(settings(tmp_path / "cut"), resume=True, progress=False)
    results, queries, labels = rows(tmp_path / "cut")
    assert (results, queries, labels) == rows(tmp_path / "ref")
    assert len(queries) == 2 * 2 * 10 and all(score is not None for *_, score in queries)
    assert len(labels) == 2 * (20 + 2 * 10)
