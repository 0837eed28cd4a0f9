"""RAViTConfig: the paper's presets, derived sizes (hand-computed), round trips, errors."""

import dataclasses
import json

import pytest

from ravit_keras.config import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAViTConfig,
    exit_name,
    format_layers,
    get_config,
    parse_layers,
    preset_names,
)

# Presets: the values of RAVIT.md's "Reference configurations" table ---------


def test_cifar10_preset_matches_paper():
    c = get_config("cifar10")
    assert c.name == "cifar10"
    assert c.image_size == (32, 32)
    assert c.layers == (1, 3)
    assert c.layer_spec == "1-3"
    assert (c.patch_size, c.hidden_dim, c.mlp_dim, c.num_heads) == (4, 128, 512, 4)
    assert c.head_dim == 32
    assert c.num_classes == 10
    assert c.branch_image_sizes == ((16, 16), (32, 32))
    # n_i = (H_i / P) * (W_i / P) + 1
    assert [c.num_patches(i) for i in range(2)] == [16, 64]
    assert [c.num_tokens(i) for i in range(2)] == [17, 65]
    assert c.mean == CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert c.std == CIFAR10_STD == (0.2470, 0.2435, 0.2616)


def test_tinyimagenet_preset_matches_paper():
    c = get_config("tinyimagenet")
    assert c.image_size == (64, 64)
    assert c.layers == (2, 0, 3)
    assert (c.patch_size, c.hidden_dim, c.mlp_dim, c.num_heads) == (4, 768, 3072, 12)
    assert c.num_classes == 200
    assert c.branch_image_sizes == ((16, 16), (32, 32), (64, 64))
    assert [c.num_tokens(i) for i in range(3)] == [17, 65, 257]
    assert c.mean == IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert c.std == IMAGENET_STD == (0.229, 0.224, 0.225)


def test_imagenet_preset_matches_paper():
    c = get_config("imagenet")
    assert c.image_size == (224, 224)
    assert c.layers == (1, 1, 8)
    assert (c.patch_size, c.hidden_dim, c.mlp_dim, c.num_heads) == (16, 768, 3072, 12)
    assert c.num_classes == 1000
    # 64, 128, 224 px: no single scale factor gives these, hence branch_sizes.
    assert c.branch_sizes == (64, 128, 224)
    assert c.branch_image_sizes == ((64, 64), (128, 128), (224, 224))
    assert [c.num_tokens(i) for i in range(3)] == [4 * 4 + 1, 8 * 8 + 1, 14 * 14 + 1]
    assert get_config("imagenet", layers="1-1-10").layers == (1, 1, 10)


def test_tiny_presets_are_small():
    tiny = get_config("tiny", layers="1-2")
    assert tiny.layers == (1, 2)
    assert tiny.hidden_dim <= 64 and tiny.branch_image_sizes == ((16, 16), (32, 32))
    tiny3 = get_config("tiny3")
    assert tiny3.layers == (1, 1, 2)
    assert tiny3.branch_image_sizes == ((8, 8), (16, 16), (32, 32))
    assert tiny3.hidden_dim % tiny3.num_heads == 0


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_and_validates(name):
    c = get_config(name)
    assert c.name == name
    assert c.branch_image_sizes[-1] == c.image_size
    assert len(c.exit_names) >= 1


# Branch sizes and tokens for other scale factors (hand values) --------------
#
# Branch i of N sees image / s^(N - i), rounded to whole patches:
#   32 / 1.5  = 21.33 -> 5.33 patches -> 5 -> 20 px, n = 5*5 + 1 = 26
#   32 / 1.2  = 26.67 -> 6.67 patches -> 7 -> 28 px, n = 7*7 + 1 = 50
#   64 / 1.5^2 = 28.44 -> 7.11 -> 7 -> 28 px (n = 50); 64 / 1.5 = 42.67 -> 10.67 -> 11 -> 44 px (n = 122)
#   64 / 1.2^2 = 44.44 -> 11.11 -> 11 -> 44 px (n = 122); 64 / 1.2 = 53.33 -> 13.33 -> 13 -> 52 px (n = 170)


@pytest.mark.parametrize(
    "name, scale, sizes, tokens",
    [
        ("cifar10", 2.0, (16, 32), (17, 65)),
        ("cifar10", 1.5, (20, 32), (26, 65)),
        ("cifar10", 1.2, (28, 32), (50, 65)),
        ("tinyimagenet", 2.0, (16, 32, 64), (17, 65, 257)),
        ("tinyimagenet", 1.5, (28, 44, 64), (50, 122, 257)),
        ("tinyimagenet", 1.2, (44, 52, 64), (122, 170, 257)),
    ],
)
def test_branch_sizes_and_tokens_for_scale(name, scale, sizes, tokens):
    c = get_config(name, scale=scale)
    assert c.branch_image_sizes == tuple((s, s) for s in sizes)
    assert tuple(c.num_tokens(i) for i in range(c.num_branches)) == tokens


def test_non_square_image_keeps_aspect_ratio():
    c = RAViTConfig(image_size=(32, 64), layers="1-2", patch_size=4, hidden_dim=32,
                    mlp_dim=64, num_heads=2)
    assert c.branch_image_sizes == ((16, 32), (32, 64))
    assert [c.num_tokens(i) for i in range(2)] == [4 * 8 + 1, 8 * 16 + 1]


def test_large_scale_keeps_at_least_one_patch():
    c = get_config("cifar10", scale=100.0)
    assert c.branch_image_sizes == ((4, 4), (32, 32))
    assert c.num_tokens(0) == 2


# Exits and loss weights ----------------------------------------------------


def test_exits_of_spec_with_skipped_branch():
    c = get_config("tinyimagenet", layers="2-0-3")
    assert c.num_branches == 3
    assert c.exit_branches == (0, 2)
    assert c.exit_names == ("exit_1", "exit_3")
    assert exit_name(2) == "exit_3"


@pytest.mark.parametrize(
    "spec, branches",
    [("0-0-4", (2,)), ("0-4-0", (1,)), ("1-1-8", (0, 1, 2)), ("0-3", (1,))],
)
def test_exit_branches_of_various_specs(spec, branches):
    c = get_config("imagenet" if spec.count("-") == 2 else "cifar10", layers=spec)
    assert c.exit_branches == branches
    assert c.exit_names == tuple(f"exit_{b + 1}" for b in branches)


def test_loss_weights_default_equal():
    c = get_config("tinyimagenet", layers="2-0-3")
    assert c.exit_weights is None
    assert c.loss_weights == {"exit_1": 1.0, "exit_3": 1.0}


def test_loss_weights_custom():
    c = get_config("tinyimagenet", layers="2-0-3", exit_weights=(0.3, 0.7))
    assert c.exit_weights == (0.3, 0.7)
    assert c.loss_weights == {"exit_1": 0.3, "exit_3": 0.7}
    # A zero weight is allowed as long as one exit is trained.
    assert get_config("cifar10", exit_weights=[0, 1]).loss_weights == {"exit_1": 0.0, "exit_2": 1.0}


# Variants and serialisation ------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        *[get_config(n) for n in preset_names()],
        get_config("tinyimagenet", layers="2-0-3", exit_weights=(0.25, 0.75), scale=1.5,
                   dropout=0.1),
        RAViTConfig(image_size=(32, 64), layers=(1, 2), hidden_dim=32, mlp_dim=64, num_heads=2),
    ],
    ids=lambda c: f"{c.name}-{c.layer_spec}",
)
def test_json_round_trip(config):
    text = config.to_json()
    data = json.loads(text)
    assert data["layers"] == config.layer_spec  # The paper's "a-b-c" form in files.
    back = RAViTConfig.from_json(text)
    assert back == config
    assert back.to_dict() == config.to_dict()
    assert RAViTConfig.from_dict(config.to_dict()) == config


def test_from_dict_rejects_unknown_fields():
    d = get_config("cifar10").to_dict()
    d["depth"] = 12
    with pytest.raises(ValueError, match=r"Unknown RAViTConfig fields: \['depth'\]"):
        RAViTConfig.from_dict(d)


def test_string_and_tuple_layers_are_the_same_config():
    a = RAViTConfig(image_size=32, layers="1-3")
    b = RAViTConfig(image_size=(32, 32), layers=(1, 3))
    assert a == b
    assert a.image_size == (32, 32)


def test_config_is_frozen():
    c = get_config("cifar10")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hidden_dim = 64


def test_classic_baseline():
    c = get_config("cifar10", exit_weights=(0.4, 0.6))
    base = c.classic(4)
    assert base.layers == (0, 4)
    assert base.layer_spec == "0-4"
    assert base.exit_names == ("exit_2",)
    assert base.exit_weights is None  # The old per-exit weights do not fit one exit.
    assert base.branch_image_sizes[-1] == (32, 32)
    assert base.hidden_dim == c.hidden_dim and base.num_classes == c.num_classes
    assert get_config("tinyimagenet").classic(3).layers == (0, 0, 3)
    assert get_config("imagenet").classic(12).layer_spec == "0-0-12"


def test_replace_keeps_weights_only_when_exit_count_matches():
    c = get_config("tiny3", exit_weights=(0.2, 0.3, 0.5))
    assert c.replace(layers="2-1-1").exit_weights == (0.2, 0.3, 0.5)
    assert c.replace(layers="1-0-2").exit_weights is None
    assert c.replace(hidden_dim=64).hidden_dim == 64


def test_parse_and_format_layers():
    assert parse_layers("2-0-3") == (2, 0, 3)
    assert parse_layers(" 1-3 ") == (1, 3)
    assert parse_layers([0, 4]) == (0, 4)
    assert format_layers((2, 0, 3)) == "2-0-3"


# Clear errors ----------------------------------------------------------------


def test_unknown_preset_name():
    with pytest.raises(ValueError, match=r"Unknown configuration 'cifar100'; known: cifar10, "):
        get_config("cifar100")


def test_image_not_divisible_by_patch():
    with pytest.raises(ValueError, match=r"Image size 30x30 is not divisible by the patch size 4"):
        get_config("cifar10", image_size=30)
    with pytest.raises(ValueError, match=r"not divisible by the patch size 16"):
        RAViTConfig(image_size=(224, 200), layers="0-12", patch_size=16)


@pytest.mark.parametrize("spec", ["0-0", "0", (0, 0, 0)])
def test_all_zero_spec(spec):
    with pytest.raises(ValueError, match=r"has no layers at all"):
        get_config("cifar10", layers=spec)


@pytest.mark.parametrize("spec", ["1-x", "1--3", "", "1,3", "a-b-c"])
def test_malformed_spec(spec):
    with pytest.raises(ValueError, match=r"is not of the form 'a-b-c' with integers"):
        get_config("cifar10", layers=spec)


def test_negative_layer_count():
    with pytest.raises(ValueError, match=r"'1--3' has a negative layer count"):
        parse_layers([1, -3])


def test_empty_layer_sequence():
    with pytest.raises(ValueError, match=r"Layer spec is empty"):
        parse_layers([])


@pytest.mark.parametrize("weights", [(-0.5, 1.5), (1.0, float("nan"))])
def test_negative_or_nan_exit_weights(weights):
    with pytest.raises(ValueError, match=r"exit_weights must be non-negative"):
        get_config("cifar10", exit_weights=weights)


def test_all_zero_exit_weights():
    with pytest.raises(ValueError, match=r"exit_weights are all zero"):
        get_config("cifar10", exit_weights=(0, 0))


@pytest.mark.parametrize("weights", [(1.0,), (0.2, 0.3, 0.5)])
def test_wrong_number_of_exit_weights(weights):
    with pytest.raises(
        ValueError, match=rf"exit_weights has {len(weights)} entries but layers '1-3' has 2 exits"
    ):
        get_config("cifar10", exit_weights=weights)


def test_exit_weights_count_exits_not_branches():
    # "2-0-3" has three branches but two exits.
    with pytest.raises(ValueError, match=r"exit_weights has 3 entries but layers '2-0-3' has 2 exits"):
        get_config("tinyimagenet", exit_weights=(1, 1, 1))


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match=r"hidden_dim 128 is not divisible by num_heads 3"):
        get_config("cifar10", num_heads=3)


@pytest.mark.parametrize("dropout", [1.0, 1.5, -0.1])
def test_dropout_out_of_range(dropout):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        get_config("cifar10", dropout=dropout)


@pytest.mark.parametrize("scale", [0.5, float("inf"), float("nan")])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match=r"scale must be a finite number >= 1"):
        get_config("cifar10", scale=scale)


@pytest.mark.parametrize("field", ["hidden_dim", "mlp_dim", "num_heads", "num_classes"])
def test_non_positive_sizes(field):
    with pytest.raises(ValueError, match=rf"{field} must be positive"):
        get_config("cifar10", **{field: 0})


def test_one_class_is_rejected():
    with pytest.raises(ValueError, match=r"num_classes must be at least 2"):
        get_config("cifar10", num_classes=1)


def test_bad_branch_sizes():
    with pytest.raises(ValueError, match=r"has 2 entries but layers '1-1-8' has 3 branches"):
        get_config("imagenet", branch_sizes=(112, 224))
    with pytest.raises(ValueError, match=r"must be positive multiples of the patch size 16"):
        get_config("imagenet", branch_sizes=(60, 128, 224))
    with pytest.raises(ValueError, match=r"equals the last branch size 192"):
        get_config("imagenet", branch_sizes=(64, 128, 192))
    with pytest.raises(ValueError, match=r"are not coarse to fine"):
        get_config("imagenet", branch_sizes=(128, 64, 224))


def test_bad_mean_std():
    with pytest.raises(ValueError, match=r"mean and std must have 3 entries each, std positive"):
        get_config("cifar10", std=(0.2, 0.0, 0.2))
