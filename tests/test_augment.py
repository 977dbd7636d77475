import pytest
import torch
import torch.nn.functional as F

from activeloss.data.augment import augment, parse_augment, random_crop, random_flip
from activeloss.errors import ConfigError


def test_random_crop_matches_a_per_image_loop():
    x = torch.rand(16, 3, 8, 8)
    pad = 2
    out = random_crop(x, pad, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    oy = torch.randint(0, 2 * pad + 1, (16,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (16,), generator=g)
    padded = F.pad(x, (pad, pad, pad, pad))
    for i in range(16):
        expected = padded[i, :, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], expected)
    assert (out == 0).any()  # some crop reached into the zero padding


def test_random_flip_flips_about_half_exactly():
    x = torch.rand(400, 1, 4, 5)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_augment_is_seeded_and_parse_rejects_unknown():
    x = torch.rand(8, 3, 8, 8)
    a = augment(x, ("crop", "flip"), 4, torch.Generator().manual_seed(1))
    b = augment(x, ("crop", "flip"), 4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert parse_augment("flip, crop") == ("flip", "crop")
    assert parse_augment("none") == ()
    with pytest.raises(ConfigError, match="unknown augmentation 'rotate'"):
        parse_augment("flip,rotate")
